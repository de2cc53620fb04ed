"""The one size limit of every reader: pixel data a file declares over `byte_limit()` is refused before
anything is allocated or decoded (`check_size`). It follows Pillow's own `PIL.Image.MAX_IMAGE_PIXELS`: raise
that to read larger files."""

from mims_tf.data.errors import DataError


def pixel_limit():
    """`PIL.Image.MAX_IMAGE_PIXELS`, read when asked (a caller may have changed it); None: no limit."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def byte_limit():
    """The most bytes of pixel data one file may declare: 12 per pixel of `PIL.Image.MAX_IMAGE_PIXELS` (Pillow's
    own measure, 1 GiB by default); None when that limit is off. One limit for every reader: raise
    `PIL.Image.MAX_IMAGE_PIXELS` to read larger files."""
    limit = pixel_limit()
    return 12 * limit if limit else None


def check_size(path, what, count, itemsize):
    """Refuses `count` values of `itemsize` bytes over `byte_limit()`, before anything is allocated."""
    limit = byte_limit()
    if limit and count * itemsize > limit:
        raise DataError(path, f"{what} ({count * itemsize} bytes), over the limit of {limit} bytes "
                              "(12 per pixel of PIL.Image.MAX_IMAGE_PIXELS): refused before loading")
