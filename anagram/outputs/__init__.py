"""What the toolkit writes to disk, and reads back: files, sample folders, pictures.

Rooms: `atomic` (every file written whole or not at all), `records` (the sample-folder format: one
definition of a sample record, written and read in one place), `pictures` (conversions and the
views strip), `animation` (GIF/MP4 of an anagram turning), `contact_sheet` (a run on a page).
Nothing here prints; it imports only `anagram.views` of the package.
"""
