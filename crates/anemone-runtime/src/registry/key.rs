//! The registry snapshot's key: a model name that is compared without a
//! call to `memcmp`. A lookup compares the name it is given with the key it
//! finds, and for names of a few bytes the call to libc's `memcmp` that
//! `str`'s comparison makes was about a third of a cached lookup's time
//! (measured with `perf` on the `hot_path` bench); word-sized loads compare
//! them inline.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// A model name owned by the snapshot.
#[derive(Clone, Debug)]
pub(super) struct Key(pub(super) String);

/// A borrowed model name, as a lookup asks for it.
#[repr(transparent)]
pub(super) struct Name(str);

impl Name {
    pub(super) fn new(name: &str) -> &Name {
        // SAFETY: `Name` is a `repr(transparent)` wrapper of `str`: both
        // references have the same layout and metadata (`std::path::Path::new`
        // does the same for `OsStr`).
        unsafe { &*(name as *const str as *const Name) }
    }
}

impl PartialEq for Name {
    #[inline]
    fn eq(&self, other: &Name) -> bool {
        same_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Name {}

impl Hash for Name {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl Borrow<Name> for Key {
    #[inline]
    fn borrow(&self) -> &Name {
        Name::new(&self.0)
    }
}

// `Key`'s equality and hash are `Name`'s, as `Borrow` requires.
impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        Name::new(&self.0) == Name::new(&other.0)
    }
}

impl Eq for Key {}

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        Name::new(&self.0).hash(state)
    }
}

/// `a == b`, compared in words: the first and last word of the shorter
/// lengths, whole words and the last (overlapping) one from eight bytes on.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8]| u64::from_ne_bytes(s[..8].try_into().expect("eight bytes"));
    let half = |s: &[u8]| u32::from_ne_bytes(s[..4].try_into().expect("four bytes"));
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a) == half(b) && half(&a[n - 4..]) == half(&b[n - 4..]),
        _ => {
            a.chunks_exact(8)
                .zip(b.chunks_exact(8))
                .all(|(x, y)| word(x) == word(y))
                && word(&a[n - 8..]) == word(&b[n - 8..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            assert!(same_bytes(&a, &a.clone()), "equal, length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!same_bytes(&a, &b), "length {n}, differs at {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer), "lengths {n} and {}", n + 1);
        }
    }
}
