"""Tally's upload service: sessions, photo intake and validation, originals in S3."""
