#!/usr/bin/env python3
"""Build the small MNIST and bAbI fixtures of the test suite from a full copy of the data.

Usage:
    python3 scripts/make-fixtures.py [SRC] [OUT]
    python3 scripts/make-fixtures.py --checksums [SRC]

SRC is a data root holding mnist/ (the four IDX .gz files) and babi/tasks_1-20_v1-2/ (default:
../shared/data beside the checkout). OUT defaults to crates/mg-data/tests/fixtures.

The fixtures are a data root of their own:
    mnist/               the first 200 train and 100 test images with their labels, as gzip'd IDX
    babi/tasks_1-20_v1-2/
        LICENSE.txt, README.txt   copied unchanged
        en/              the first 3 train and 2 test stories of every task
        en-10k/          the first 4 train and 2 test stories of every task, without qa3 train
                         (the same gap as the copy the fixtures come from)
    SHA256SUMS           SHA-256 of every file, relative to OUT; MNIST files are hashed unpacked
                         and named without .gz (the format `mg-train data download` verifies)
    expected.json        counts and the corpus words (without '.' and '?'), computed here
                         independently of the Rust loader
    README.md            what the folder holds and its licences

`--checksums` prints the same SHA256SUMS table for the full data in SRC.
Only the standard library is used. The output is deterministic (gzip without a timestamp).
"""

import gzip
import hashlib
import json
import os
import shutil
import struct
import sys

MNIST_TRAIN, MNIST_TEST = 200, 100
STORIES = {("en", "train"): 3, ("en", "test"): 2, ("en-10k", "train"): 4, ("en-10k", "test"): 2}
MISSING = ("en-10k", "qa3_three-supporting-facts_train.txt")
TASKS = [
    "qa1_single-supporting-fact", "qa2_two-supporting-facts", "qa3_three-supporting-facts",
    "qa4_two-arg-relations", "qa5_three-arg-relations", "qa6_yes-no-questions", "qa7_counting",
    "qa8_lists-sets", "qa9_simple-negation", "qa10_indefinite-knowledge", "qa11_basic-coreference",
    "qa12_conjunction", "qa13_compound-coreference", "qa14_time-reasoning", "qa15_basic-deduction",
    "qa16_basic-induction", "qa17_positional-reasoning", "qa18_size-reasoning", "qa19_path-finding",
    "qa20_agents-motivations",
]
MNIST_FILES = [
    ("train-images-idx3-ubyte", 2051, MNIST_TRAIN),
    ("train-labels-idx1-ubyte", 2049, MNIST_TRAIN),
    ("t10k-images-idx3-ubyte", 2051, MNIST_TEST),
    ("t10k-labels-idx1-ubyte", 2049, MNIST_TEST),
]
BABI = os.path.join("babi", "tasks_1-20_v1-2")


README = """\
# Test fixtures

A small data root for the tests, made by `python3 scripts/make-fixtures.py SRC` from a full copy of the
data (see docs/DATA.md); do not edit by hand.

* `mnist/`: the first 200 training and 100 test images of MNIST with their labels, gzip'd IDX.
* `babi/tasks_1-20_v1-2/`: the first stories of every bAbI task (`en/`: 3 train, 2 test; `en-10k/`: 4 train,
  2 test, no qa3 train file), with the release's `LICENSE.txt` and `README.txt`.
* `SHA256SUMS`: checksums in the format of `mg-train data download`'s table (MNIST hashed unpacked).
* `expected.json`: counts, labels and vocabularies computed by the script.

MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) is available under CC BY-SA 3.0. The bAbI tasks are
Copyright (c) 2015-present, Facebook, Inc., under CC BY 3.0 (`babi/tasks_1-20_v1-2/LICENSE.txt`); J. Weston
et al., "Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks", arXiv:1502.05698.
These excerpts keep those licences.
"""


def idx_head(data, magic, n):
    """The first n items of an IDX file (images 28x28 or labels), header rewritten."""
    found, count = struct.unpack(">II", data[:8])
    assert found == magic, f"magic {found}, expected {magic}"
    assert count >= n, f"{count} items, expected at least {n}"
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        assert (rows, cols) == (28, 28)
        return struct.pack(">IIII", magic, n, rows, cols) + data[16:16 + n * rows * cols]
    return struct.pack(">II", magic, n) + data[8:8 + n]


def stories_of(text):
    """Splits a bAbI file into stories (lists of lines), a story starting at line ID 1."""
    stories = []
    for line in text.split("\n"):
        if not line:
            continue
        if line.split(" ", 1)[0] == "1":
            stories.append([])
        stories[-1].append(line)
    return stories


def tokens(text):
    """Lower-cased words with a trailing '.' or '?' split off, as the Rust reader does."""
    out = []
    for raw in text.split():
        w = raw.lower()
        punct = None
        if w.endswith("."):
            w, punct = w[:-1], "."
        elif w.endswith("?"):
            w, punct = w[:-1], "?"
        if w:
            out.append(w)
        if punct:
            out.append(punct)
    return out


def count(stories, words):
    """Question count of a file's stories; adds every word (answers split on ',') to `words`."""
    questions = 0
    for story in stories:
        for line in story:
            rest = line.split(" ", 1)[1]
            fields = rest.split("\t")
            words.update(tokens(fields[0]))
            if len(fields) == 3:
                questions += 1
                words.update(a.strip().lower() for a in fields[1].split(",") if a.strip())
    return questions


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def manifest(root):
    """SHA256SUMS lines for a data root: MNIST unpacked (name without .gz), bAbI files as they are."""
    lines = []
    for name, _, _ in MNIST_FILES:
        path = os.path.join(root, "mnist", name + ".gz")
        if os.path.exists(path):
            with gzip.open(path, "rb") as f:
                lines.append(f"{sha256(f.read())}  mnist/{name}")
    base = os.path.join(root, BABI)
    for variant in ["", "en", "en-10k"]:
        folder = os.path.join(base, variant)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    rel = "/".join(p for p in ["babi/tasks_1-20_v1-2", variant, name] if p)
                    lines.append(f"{sha256(f.read())}  {rel}")
    return "".join(line + "\n" for line in lines)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    workspace = os.path.dirname(here)
    default_src = os.path.join(workspace, "..", "shared", "data")
    if argv[:1] == ["--checksums"]:
        sys.stdout.write(manifest(argv[1] if len(argv) > 1 else default_src))
        return
    src = argv[0] if argv else default_src
    out = argv[1] if len(argv) > 1 else os.path.join(workspace, "crates", "mg-data", "tests", "fixtures")
    expected = {"mnist": {}, "babi": {}}

    os.makedirs(os.path.join(out, "mnist"), exist_ok=True)
    for name, magic, n in MNIST_FILES:
        with gzip.open(os.path.join(src, "mnist", name + ".gz"), "rb") as f:
            head = idx_head(f.read(), magic, n)
        with open(os.path.join(out, "mnist", name + ".gz"), "wb") as f:
            f.write(gzip.compress(head, compresslevel=9, mtime=0))
        if magic == 2049:
            labels = list(head[8:])
            split = "train" if name.startswith("train") else "test"
            expected["mnist"][split] = {
                "count": n,
                "first_labels": labels[:10],
                "class_counts": [labels.count(c) for c in range(10)],
            }

    src_babi, out_babi = os.path.join(src, BABI), os.path.join(out, BABI)
    for name in ["LICENSE.txt", "README.txt"]:
        os.makedirs(out_babi, exist_ok=True)
        shutil.copyfile(os.path.join(src_babi, name), os.path.join(out_babi, name))
    for variant in ["en", "en-10k"]:
        os.makedirs(os.path.join(out_babi, variant), exist_ok=True)
        words, files = set(), {}
        for task in TASKS:
            for split in ["train", "test"]:
                name = f"{task}_{split}.txt"
                if (variant, name) == MISSING:
                    continue
                with open(os.path.join(src_babi, variant, name), encoding="ascii") as f:
                    stories = stories_of(f.read())[: STORIES[(variant, split)]]
                text = "".join(line + "\n" for story in stories for line in story)
                with open(os.path.join(out_babi, variant, name), "w", encoding="ascii", newline="\n") as f:
                    f.write(text)
                files[name] = {"stories": len(stories), "questions": count(stories, words)}
        # The loader falls back to en's qa3 train for en-10k: its words count too.
        if variant == "en-10k":
            with open(os.path.join(out_babi, "en", MISSING[1]), encoding="ascii") as f:
                count(stories_of(f.read()), words)
        expected["babi"][variant] = {"files": files, "vocabulary": sorted(words - {".", "?"})}

    with open(os.path.join(out, "README.md"), "w", newline="\n") as f:
        f.write(README)
    with open(os.path.join(out, "SHA256SUMS"), "w", newline="\n") as f:
        f.write(manifest(out))
    with open(os.path.join(out, "expected.json"), "w", newline="\n") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
