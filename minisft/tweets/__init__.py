"""The tweet domain: what this kit fine-tunes on, kept apart from the SFT machinery one folder up.

  datagen.py, parts.json   the seeded generator of the shipped synthetic set, and its engagement oracle
  topics.py                topics, styles and instruction phrasings (shared by the generator and the importers)
  importers.py, formats.py your own posts: X archive, X analytics CSV, Bluesky feed, any CSV/JSONL -> records
  judges.py, predictor.py  who says how many likes a tweet would get: the oracle (synthetic records only) or a
                           ridge predictor fitted on your training split
  metrics.py               tweet metrics: length, variety, copying, topic adherence

Nothing in minisft/'s SFT core needs any of this to train: a record is an instruction and a response, with
engagement counts when there are some.
"""
