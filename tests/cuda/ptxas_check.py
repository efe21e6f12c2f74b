#!/usr/bin/env python3
"""ptxas_check.py NVCC INCLUDE_DIR SOURCE.cu

Compiles SOURCE.cu for sm_90 with `-Xptxas -v` and fails when any kernel it reports uses a
stack frame (ptxas: "N bytes stack frame" with N > 0) or spills registers. SOURCE holds
explicit instantiations of the hot kernels (tests/cuda/hot_kernels.cu)."""
import os, re, subprocess, sys, tempfile


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    nvcc, inc, src = argv[1:]
    with tempfile.TemporaryDirectory() as d:
        cmd = [nvcc, "-std=c++20", "-arch=sm_90", "-Xptxas", "-v", "--Werror=all-warnings", "-I" + inc, "-c", src,
               "-o", os.path.join(d, "hot.o")]
        r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        print("FAIL: the hot kernels do not compile:\n" + out[:6000])
        return 1
    kernels, bad, current = 0, [], None
    for line in out.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current:
            if current.startswith("_Z") and "kernel" in current:
                kernels += 1
                if any(int(x) for x in m.groups()):
                    bad.append(f"{current}: {line.strip()}")
            current = None
    for b in bad:
        print("FAIL stack frame or spills in " + b)
    print(f"ptxas check: {kernels} hot kernel(s), {len(bad)} with a stack frame or spills")
    if kernels == 0:
        print("FAIL: no kernel found in the ptxas report:\n" + out[:4000])
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
