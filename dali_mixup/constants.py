"""Constants every sample kind shares, written once."""

#: ImageNet's per-channel mean and standard deviation, in [0, 1] units (torchvision's, timm's)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the name of every pipeline's reader (the iterator reads its epoch size and shard from it)
READER_NAME = "Reader"
#: batches DALI prepares ahead, by default
PREFETCH_QUEUE_DEPTH = 2
