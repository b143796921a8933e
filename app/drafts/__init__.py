"""Draft previews (``POST /v1/preview/draft``) in a worker process with time, memory and size limits.

``preview`` builds one answer; ``worker`` is the process that runs it; ``runner`` is the relay's
side, which starts, asks and replaces that process; ``channel`` is what passes between them.
"""
