"""Source file → packaged HLS title: one ffmpeg process per title (or, for a long title with packager slots
to spare, one per chunk of its video), progress, atomic publish."""
