"""Constants every sample kind shares, written once."""

#: ImageNet's per-channel mean and standard deviation, in [0, 1] units (torchvision's, timm's)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the name of every pipeline's reader (the iterator reads its epoch size and shard from it)
READER_NAME = "Reader"
#: batches DALI prepares ahead, by default
PREFETCH_QUEUE_DEPTH = 2
#: the image extensions ``fn.readers.file(file_root=...)`` picks up by default (its
#: ``file_filters``, audio left out); DALI matches them case-insensitively
DALI_IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pnm", ".ppm", ".pgm", ".pbm", ".jp2", ".webp",
)
