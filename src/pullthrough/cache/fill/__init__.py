"""One blob download, from upstream into storage, readable by clients while it arrives.

- `state.py`: the fill's states (`FillState`) and the record that publishes them to other
  worker processes;
- `lead.py`: `LeadFill`, the fill in the process that downloads: spool, verify, commit;
- `follow.py`: `FollowFill`, the fill as another worker process that follows it sees it;
- `peer.py`: `PeerFill`, the fill as another replica sees it: streamed from the one that leads
  it over its fills endpoint (`api/peer.py`);
- `reading.py`: `Fill`, what each is to a reader: bytes as they grow, the last one only once
  verified;
- `downloading.py`: `DownloadingFill`, what the lead and peer fills share: bytes received into
  the spool file, readers woken at each change;
- `heap.py`: the memory downloads used given back when the last one ends;
- `spool.py`: writing and hashing the bytes off the event loop.

`cache/blobs.py` decides which one a request gets (the lock of `storage/locks.py` does).
"""
