#!/usr/bin/python3
"""Makes a torrent with libtorrent (python3-libtorrent), for the v2 tests.

    lt_make.py CONTENT OUT {v1,v2,hybrid} PIECE_LENGTH

CONTENT is a file or a folder; OUT the .torrent written.
"""
import os
import sys

import libtorrent as lt

content, out, kind, piece = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[kind]
fs = lt.file_storage()
lt.add_files(fs, content)
t = lt.create_torrent(fs, piece, flags=flags)
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(content)))
with open(out, "wb") as f:
    f.write(lt.bencode(t.generate()))
ih = lt.torrent_info(out).info_hashes()
print("v1", ih.v1, "v2", ih.v2)
