"""Uploads one file with the real tuspy client, resuming from its URL store. Run as a process so tests
can kill it mid-upload: python3 tuspy_upload.py ENDPOINT FILE CHUNK_SIZE STORE_PATH [NAME]"""

import sys

from tusclient import client
from tusclient.storage import filestorage

endpoint, path, chunk_size, store_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
name = sys.argv[5] if len(sys.argv) > 5 else None
storage = filestorage.FileStorage(store_path)
uploader = client.TusClient(endpoint).uploader(
    path, chunk_size=chunk_size, metadata={"filename": name} if name else {}, store_url=True, url_storage=storage,
    retries=3, retry_delay=1)
while uploader.offset < uploader.get_file_size():
    uploader.upload_chunk()
    print(f"offset {uploader.offset}", flush=True)
print(f"done {uploader.url}", flush=True)
storage.close()
