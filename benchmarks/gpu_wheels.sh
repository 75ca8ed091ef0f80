#!/usr/bin/env bash
# The wheels bench_gpu.py needs on a GPU machine without network that already has Python 3.12,
# torch, torchvision, scikit-image, pandas, pyarrow, xarray, scipy, tifffile and OpenCV:
# cellscale itself and what it needs beyond those, at the versions of this environment.
#
#   bash benchmarks/gpu_wheels.sh [FOLDER]        # default .whl (add it to .git/info/exclude)
#
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site FOLDER/*.whl
#   PYTHONPATH=/tmp/site:. python3 benchmarks/bench_gpu.py --out "$OUT"
set -euo pipefail
folder=${1:-.whl}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
names=(dask distributed zarr numcodecs donfig google-crc32c ome-zarr ome-zarr-models tornado zict
       tblib locket partd cellpose fastremap fill-voids natsort roifile segment-anything
       deprecated pydantic pydantic-core annotated-types typing-inspection)
pins=()
for name in "${names[@]}"; do
  version=$("$python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$version" ] && pins+=("$name==$version")
done
mkdir -p "$folder"
"$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform any -d "$folder" "${pins[@]}"
"$python" -m pip wheel --no-deps -q -w "$folder" "$here"
du -sh "$folder"
