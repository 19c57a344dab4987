"""Running requests: a parsed request, a loaded model, job files, the manifest and the batch engine.

Rooms: `request` (`Request`: parsed once at the boundary), `model` (`LoadedModel`: weights loaded
once, any request run on them, results written in the sample-folder format), `jobs` (job files,
checked line by line before anything loads), `manifest` (the index of a batch folder) and `batch`
(`run_batch`: resumable, data parallel; it reports through a callback and returns a result).
Nothing here prints: the CLI and the web app are the faces.
"""
