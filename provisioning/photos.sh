#!/usr/bin/env bash
# Real photographs for INT8 calibration and its accuracy gate, from the sample data of Debian packages:
# darknet, labelme-examples, opencv-doc and python-matplotlib-data (downloaded with apt-get download,
# unpacked, never installed). Usage: provisioning/photos.sh DEST  ->  DEST/calibration/*.jpg, DEST/gate/*.jpg
# The two sets never share a photo: the gate judges a quantized model on photos it was not calibrated on.
set -euo pipefail
dest=${1:?usage: $0 DEST}
[ -s "$dest/gate/.complete" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
packages=(darknet labelme-examples opencv-doc python-matplotlib-data)
(cd "$tmp" && { apt-get download "${packages[@]}" >/dev/null 2>&1 \
    || { ${SUDO:-} apt-get update -qq && apt-get download "${packages[@]}" >/dev/null; }; })
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
share=$tmp/root/usr/share
lm=$share/doc/labelme-examples/examples
cv=$share/doc/opencv-doc/examples
calibration=(
    "$share/darknet/data/eagle.jpg" "$share/darknet/data/kite.jpg"
    "$lm/video_annotation/data_annotated/00000100.jpg" "$lm/video_annotation/data_annotated/00000103.jpg"
    "$lm/bbox_detection/data_annotated/2011_000006.jpg" "$cv/text/scenetext06.jpg"
    "$cv/data/aero1.jpg" "$cv/data/baboon.jpg" "$cv/data/leuvenA.jpg" "$cv/alphamat/input_images/plant.jpg"
)
gate=(
    "$share/darknet/data/"{dog,giraffe,horses,person,scream}.jpg
    "$share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"
    "$lm/bbox_detection/data_annotated/"{2011_000003,2011_000025}.jpg "$lm/tutorial/apc2016_obj3.jpg"
    "$lm/classification/data_annotated/"{0001,0002}.jpg
    "$lm/video_annotation/data_annotated/"{00000101,00000102,00000104}.jpg
    "$cv/data/"{HappyFish,aero3,aloeL,apple,board,building,butterfly,ela_original,fruits,home,left01}.jpg
    "$cv/data/"{leuvenB,licenseplate_motion,messi5,orange,squirrel_cls,starry_night,stuff}.jpg
    "$cv/hfs/data/"{000,001,002}.jpg "$cv/text/scenetext0"{1,2,3,4,5}.jpg
)
copy() {  # copy SET FILE...: names keep the package folder so two "home.jpg" cannot collide
    local set=$1 f name
    shift
    mkdir -p "$dest/$set"
    for f in "$@"; do
        name=$(realpath --relative-to="$share" "$f" | sed 's#^doc/##; s#/#_#g')
        cp "$f" "$dest/$set/$name"
    done
}
copy calibration "${calibration[@]}"
copy gate "${gate[@]}"
echo "${#calibration[@]} calibration, ${#gate[@]} gate photos" > "$dest/gate/.complete"
