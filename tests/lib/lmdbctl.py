"""lmdbctl.py - an LMDB file seen through liblmdb itself (ctypes; Debian's
liblmdb0, no Python binding needed): its keys, and a way to fill the map
until MDB_MAP_FULL and back.  Used by bench/soak.py and the transport tests
to put the state store in the condition an administrator's full map is in.
"""
import ctypes


class MDBVal(ctypes.Structure):
    _fields_ = [("mv_size", ctypes.c_size_t), ("mv_data", ctypes.c_void_p)]


class Lmdb:
    MDB_NOSUBDIR, MDB_NOSYNC, MDB_RDONLY, MDB_MAP_FULL, MDB_NOTFOUND = 0x4000, 0x10000, 0x20000, -30792, -30798
    MDB_SET_RANGE, MDB_NEXT = 17, 8

    def __init__(self, path):
        self.lib = ctypes.CDLL("liblmdb.so.0")
        self.lib.mdb_strerror.restype = ctypes.c_char_p
        self.env = ctypes.c_void_p()
        self.check(self.lib.mdb_env_create(ctypes.byref(self.env)))
        # NOSYNC: filler needs no durability, and thousands of small commits
        # would each wait for the disk.
        self.check(self.lib.mdb_env_open(self.env, path.encode(), self.MDB_NOSUBDIR | self.MDB_NOSYNC,
                                         0o600))

    def check(self, rc):
        if rc != 0:
            raise OSError(rc, self.lib.mdb_strerror(rc).decode())
        return rc

    def txn(self, rdonly=False):
        t, dbi = ctypes.c_void_p(), ctypes.c_uint()
        self.check(self.lib.mdb_txn_begin(self.env, None, self.MDB_RDONLY if rdonly else 0, ctypes.byref(t)))
        self.check(self.lib.mdb_dbi_open(t, None, 0, ctypes.byref(dbi)))
        return t, dbi

    def keys(self, prefix):
        t, dbi = self.txn(rdonly=True)
        cur = ctypes.c_void_p()
        self.check(self.lib.mdb_cursor_open(t, dbi, ctypes.byref(cur)))
        buf = ctypes.create_string_buffer(prefix)
        k, v = MDBVal(len(prefix), ctypes.cast(buf, ctypes.c_void_p)), MDBVal()
        out = []
        rc = self.lib.mdb_cursor_get(cur, ctypes.byref(k), ctypes.byref(v), self.MDB_SET_RANGE)
        while rc == 0:
            key = ctypes.string_at(k.mv_data, k.mv_size)
            if not key.startswith(prefix):
                break
            out.append(key)
            rc = self.lib.mdb_cursor_get(cur, ctypes.byref(k), ctypes.byref(v), self.MDB_NEXT)
        self.lib.mdb_cursor_close(cur)
        self.lib.mdb_txn_abort(t)
        return out

    def put(self, key, size):
        data = ctypes.create_string_buffer(b"x" * size)
        t, dbi = self.txn()
        kb = ctypes.create_string_buffer(key)
        k, v = MDBVal(len(key), ctypes.cast(kb, ctypes.c_void_p)), MDBVal(size, ctypes.cast(data, ctypes.c_void_p))
        rc = self.lib.mdb_put(t, dbi, ctypes.byref(k), ctypes.byref(v), 0)
        if rc == 0:
            return self.lib.mdb_txn_commit(t)
        self.lib.mdb_txn_abort(t)
        return rc

    def delete(self, keys):
        t, dbi = self.txn()
        for key in keys:
            kb = ctypes.create_string_buffer(key)
            k = MDBVal(len(key), ctypes.cast(kb, ctypes.c_void_p))
            self.lib.mdb_del(t, dbi, ctypes.byref(k), None)
        self.check(self.lib.mdb_txn_commit(t))

    def fill(self, prefix=b"~filler:"):
        """Fill the map until MDB_MAP_FULL, keeping a way back: 512 KiB are
        written, a read transaction is opened, the 512 KiB are deleted (their
        pages cannot be reused while that reader holds the older snapshot),
        then filler records go in until the map is full.  unfill() ends the
        reader (the 512 KiB become free for everyone) and deletes the filler.
        Returns the count written."""
        self.check(self.put(prefix + b"reserve", 512 << 10))
        self.reader = ctypes.c_void_p()
        self.check(self.lib.mdb_txn_begin(self.env, None, self.MDB_RDONLY, ctypes.byref(self.reader)))
        self.delete([prefix + b"reserve"])
        n = 0
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 16):
            while True:
                rc = self.put(prefix + b"%08d" % n, size)
                if rc == self.MDB_MAP_FULL:
                    break
                self.check(rc)
                n += 1
        return n

    def unfill(self, prefix=b"~filler:"):
        self.lib.mdb_txn_abort(self.reader)
        keys = self.keys(prefix)
        for i in range(0, len(keys), 20):
            self.delete(keys[i:i + 20])
        return len(keys)

    def close(self):
        self.lib.mdb_env_close(self.env)
