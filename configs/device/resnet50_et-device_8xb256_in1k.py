# ResNet-50 EfficientTrain with the device input pipeline: the loader reads
# JPEG bytes, the GPU decodes and augments (mmet/device_pipeline.py), so the
# low-B stages are not loader-bound. Recipe, curriculum and eval pipeline
# are resnet50_et_8xb256_in1k.py's.
_base_ = '../efficienttrain/resnet50_et_8xb256_in1k.py'

train_dataloader = dict(
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(pipeline=_base_.et_device_pipeline))
data_preprocessor = _base_.et_device_preprocessor
