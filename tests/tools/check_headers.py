#!/usr/bin/env python3
"""Keeps the shape of include/spruce (DESIGN.md, section 2). Two checks:

  check_headers.py layers  ROOT
      every `#include "spruce/..."` of a header names its own layer or a lower one;
      prints each back-edge and exits 1 when there is one.
  check_headers.py compile ROOT CXX [FLAGS...] [--jobs N] [--adapter HEADER=FLAGS ...]
      compiles every public header alone (a translation unit that includes only it), so a
      header that leans on something an earlier include happened to bring fails here.
      Adapters that need a foreign library get its flags through --adapter.

  check_headers.py nvcc ROOT NVCC [FLAGS...] [--jobs N]
      compiles every CUDA header (cuda/**, cuda.hpp) alone as a CUDA translation unit
      (`-x cu -c`), e.g. with `-std=c++20 -arch=sm_90 --Werror=all-warnings`.

  check_headers.py hygiene ROOT CXX [FLAGS...]
      the umbrella spruce/spruce.hpp pulls in no POSIX or file-system header (<unistd.h>,
      <fcntl.h>, <filesystem>: file output is opt-in, spruce/io/), and spruce/eigen.hpp
      does not pull in Eigen's Tensor module (spruce/eigen_tensor.hpp does).

The layer order: core < select < {metrics, granularity, criterion, selection, schedule}
< prune < {structural, sparse, io} < cuda; top-level headers (spruce.hpp, eigen.hpp, ...)
may include anything. Headers under cuda/ and top-level cuda.hpp need nvcc and are not
compiled by the host compiler here.
"""
import os, re, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor

RANK = {"core": 0, "select": 1, "metrics": 2, "granularity": 2, "criterion": 2, "selection": 2,
        "schedule": 2, "prune": 3, "structural": 4, "sparse": 4, "io": 4, "cuda": 5}
INCLUDE = re.compile(r'\s*#\s*include\s*[<"]spruce/([^">]+)[">]')


def headers(root):
    base = os.path.join(root, "include", "spruce")
    for d, _, files in os.walk(base):
        for f in sorted(files):
            if f.endswith((".hpp", ".h", ".cuh")):
                yield os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/")


def layer(rel):
    return RANK.get(rel.split("/")[0]) if "/" in rel else None  # None: top level, unranked


def check_layers(root):
    bad = []
    for rel in headers(root):
        a = layer(rel)
        if a is None:
            continue
        path = os.path.join(root, "include", "spruce", rel)
        for n, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = m.group(1)
            b = layer(target)
            if target.split("/")[0] not in RANK and "/" in target:
                bad.append(f"{rel}:{n}: includes spruce/{target}, whose folder has no layer "
                           "(add it to DESIGN.md's order and to RANK here)")
            elif b is None and "/" not in target:
                bad.append(f"{rel}:{n}: includes the top-level spruce/{target}; layered headers "
                           "include layered headers only")
            elif b is not None and b > a:
                bad.append(f"{rel}:{n}: includes spruce/{target}, a higher layer "
                           f"({target.split('/')[0]} is above {rel.split('/')[0]}); move the "
                           "shared piece down or the including code up")
    for b in bad:
        print(b)
    print(f"layer check: {len(bad)} back-edge(s)")
    return 1 if bad else 0


def check_compile(root, cxx, flags, jobs, adapters, cuda=False):
    is_cuda = lambda h: h.startswith("cuda/") or h == "cuda.hpp"
    todo = [h for h in headers(root) if is_cuda(h) == cuda]
    inc = os.path.join(root, "include")

    def one(h):
        extra = adapters.get(h, [])
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "alone.cu" if cuda else "alone.cpp")
            with open(src, "w") as f:
                f.write(f'#include "spruce/{h}"\n#include "spruce/{h}"  // and twice: #pragma once\n')
            if cuda:
                cmd = [cxx, "-x", "cu", "-c", "-o", os.path.join(d, "alone.o"), "-I" + inc, *flags, *extra, src]
            else:
                cmd = [cxx, "-fsyntax-only", "-I" + inc, *flags, *extra, src]
            r = subprocess.run(cmd, capture_output=True, text=True)
            return h, r.returncode, r.stdout + r.stderr

    failed = 0
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        for h, rc, out in ex.map(one, todo):
            if rc != 0:
                failed += 1
                print(f"FAIL spruce/{h} does not compile alone:\n{out[:4000]}")
    print(f"standalone compile: {len(todo) - failed}/{len(todo)} headers compile alone")
    return 1 if failed else 0


# Headers the translation unit must not reach at all...
FORBIDDEN = {
    "spruce.hpp": [r"/fcntl\.h$", r"/filesystem$"],
    "eigen.hpp": [r"/unsupported/Eigen/CXX11/Tensor$"],
}
# ...and headers no spruce header it reaches may include itself (libstdc++'s C++20 <atomic>
# brings <unistd.h> for its futex waits; that is the standard library's business).
DIRECT = {"spruce.hpp": re.compile(r'#\s*include\s*<(unistd\.h|fcntl\.h|filesystem|sys/[a-z_]+\.h)>')}


def check_hygiene(root, cxx, flags):
    inc = os.path.join(root, "include")
    bad = 0
    for h, patterns in FORBIDDEN.items():
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "probe.cpp")
            with open(src, "w") as f:
                f.write(f'#include "spruce/{h}"\n')
            # -H lists every header opened, one per line on stderr, prefixed by dots.
            r = subprocess.run([cxx, "-H", "-fsyntax-only", "-I" + inc, *flags, src],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL spruce/{h} does not compile:\n{r.stderr[:4000]}")
                bad += 1
                continue
            opened = [l.split(" ", 1)[1].strip() for l in r.stderr.splitlines() if l.startswith(".") and " " in l]
            for pat in patterns:
                hits = [o for o in opened if re.search(pat, o)]
                if hits:
                    print(f"FAIL spruce/{h} includes {hits[0]} (pattern {pat})")
                    bad += 1
            if h in DIRECT:
                own = [o for o in opened if os.path.abspath(o).startswith(os.path.abspath(inc))]
                for o in own:
                    for n, line in enumerate(open(o, encoding="utf-8", errors="replace"), 1):
                        if DIRECT[h].match(line.strip()):
                            print(f"FAIL {os.path.relpath(o, inc)}:{n}: {line.strip()} reaches every "
                                  f"user of spruce/{h}; move the code that needs it to an opt-in header")
                            bad += 1
    print(f"include hygiene: {bad} problem(s)")
    return 1 if bad else 0


def main(argv):
    if len(argv) < 3 or argv[1] not in ("layers", "compile", "hygiene", "nvcc"):
        print(__doc__)
        return 2
    root = argv[2]
    if argv[1] == "layers":
        return check_layers(root)
    cxx, rest = argv[3], argv[4:]
    if argv[1] == "hygiene":
        return check_hygiene(root, cxx, rest)
    jobs, adapters, flags, i = 2, {}, [], 0
    while i < len(rest):
        if rest[i] == "--jobs":
            jobs = int(rest[i + 1]); i += 2
        elif rest[i] == "--adapter":
            h, _, f = rest[i + 1].partition("=")
            adapters[h] = f.split(";") if f else []
            i += 2
        else:
            flags.append(rest[i]); i += 1
    return check_compile(root, cxx, flags, jobs, adapters, cuda=argv[1] == "nvcc")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
