"""torchvision's ImageFolder listing (find_classes + make_dataset), standard library only.

Prints the median seconds to list both splits. Mirrors torchvision/datasets/folder.py so the
benchmark compares against what a PyTorch user's ImageFolder does at start-up.
usage: torchvision_scan.py TRAIN_DIR VAL_DIR REPEATS
"""
import os
import sys
import time

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def find_classes(directory):
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    return classes, {c: i for i, c in enumerate(classes)}


def make_dataset(directory, class_to_idx):
    instances = []
    for target_class in sorted(class_to_idx.keys()):
        class_index = class_to_idx[target_class]
        target_dir = os.path.join(directory, target_class)
        if not os.path.isdir(target_dir):
            continue
        for root, _, fnames in sorted(os.walk(target_dir, followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(root, fname)
                if path.lower().endswith(IMG_EXTENSIONS):
                    instances.append((path, class_index))
    return instances


def main():
    train, val, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for d in (train, val):
            _, idx = find_classes(d)
            make_dataset(d, idx)
        times.append(time.perf_counter() - t)
    times.sort()
    print(times[len(times) // 2])


if __name__ == "__main__":
    main()
