//! A small mailbox store on the simulated file layer, and messages for it,
//! shared by the mailbox API tests.

#![allow(dead_code)]

use mailvault::mailbox::{AppendOptions, Flags, Store, StoreOptions};
use mailvault::vfs::SimVfs;

pub fn opts() -> StoreOptions {
    StoreOptions {
        page_size: 4096,
        cache_bytes: 4 << 20,
        generation_size: 8 << 20,
        max_body_bytes: 2 << 20,
        ..StoreOptions::default()
    }
}

pub fn store() -> Store {
    Store::create(SimVfs::new(1), "/mail", opts()).expect("create")
}

pub fn msg(n: usize) -> Vec<u8> {
    format!("Subject: message {n}\r\n\r\n{}", "body text ".repeat(n % 50 + 1)).into_bytes()
}

pub fn at(date: i64, flags: Flags) -> AppendOptions {
    AppendOptions {
        internal_date: date,
        flags,
        keywords: Vec::new(),
    }
}
