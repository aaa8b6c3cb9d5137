"""The archive: member names (``members``), the manifest (``manifest``), the zip writer and reader
(``zip_stream``), hashing while copying (``hashing``), building (``build``), checking against the
manifest (``verify``) and age encryption (``encryption``). ``FORMAT.md`` beside it is the format."""
