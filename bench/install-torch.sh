#!/usr/bin/env bash
# Installs what bench/torch_bench.py needs on a fresh Debian 12 machine:
# Debian's PyTorch (python3-torch 1.13.1) and the pthread OpenBLAS, and points
# the libblas.so.3 / liblapack.so.3 alternatives at OpenBLAS (Debian's torch
# links libblas.so.3; with the reference BLAS behind it torch.mm is ~30x slower).
# Idempotent. For benchmarking by hand only: never call it from tests or CI.
# Run the benchmark with /usr/bin/python3 (a pyenv python3 does not see Debian's packages).
set -euo pipefail

pkgs=(python3-torch libopenblas0-pthread)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update
  # Recommends of python3-torch are build tools (libtorch-dev, build-essential, ...): not needed.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

arch=x86_64-linux-gnu
for lib in libblas.so.3 liblapack.so.3; do
  want="/usr/lib/$arch/openblas-pthread/$lib"
  if [[ "$(readlink -f "/usr/lib/$arch/$lib")" != "$(readlink -f "$want")" ]]; then
    update-alternatives --set "$lib-$arch" "$want"
  fi
done

/usr/bin/python3 - <<'PY'
import ctypes, torch
torch.mm(torch.ones(64, 64), torch.ones(64, 64))
assert "libopenblas" in open("/proc/self/maps").read(), "torch did not load OpenBLAS"
lib = ctypes.CDLL("libopenblas.so.0")
lib.openblas_get_config.restype = ctypes.c_char_p
print("torch", torch.__version__, "with", lib.openblas_get_config().decode())
PY
