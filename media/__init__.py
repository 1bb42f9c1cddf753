"""The domain: title ids, the library layout, source facts, the rendition ladder and the HLS model.

No servers and no event loop here; the only I/O is ffprobe (``media.probe``) and reading box headers of
packaged files (``media.mp4``).
"""
