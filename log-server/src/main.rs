fn main() { let _ = rocksdb::DB::list_cf(&rocksdb::Options::default(), "/nonexistent"); }
