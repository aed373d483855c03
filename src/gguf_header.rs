//! A first look at a GGUF header, before candle's reader parses it: candle divides by
//! `general.alignment` without checking it (an alignment of 0 panics), so a hostile or
//! damaged file must be refused here, with the field named.
//!
//! Only the metadata section is walked: fixed-size values and arrays are skipped by seeking,
//! strings by their length. Anything malformed beyond the alignment is left to candle's
//! reader, which reports it as an error.

use std::io::{Read, Seek, SeekFrom};

const MAX_DEPTH: usize = 3;

fn read_u32(r: &mut impl Read) -> Option<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Option<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

/// Bytes of one value of a fixed-size GGUF type, or None for strings and arrays.
fn fixed_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1, // u8, i8, bool
        2 | 3 => 2,     // u16, i16
        4..=6 => 4,     // u32, i32, f32
        10..=12 => 8,   // u64, i64, f64
        _ => return None,
    })
}

/// Skips one value of type `ty`; returns it as an integer when it is one of up to 8 bytes.
fn skip_value<R: Read + Seek>(r: &mut R, ty: u32, depth: usize) -> Option<Option<u64>> {
    if let Some(size) = fixed_size(ty) {
        let mut b = [0u8; 8];
        r.read_exact(&mut b[..size as usize]).ok()?;
        let int = matches!(ty, 0..=5 | 10 | 11).then(|| u64::from_le_bytes(b));
        return Some(int);
    }
    match ty {
        8 => {
            let len = read_u64(r)?;
            r.seek(SeekFrom::Current(i64::try_from(len).ok()?)).ok()?;
        }
        9 if depth < MAX_DEPTH => {
            let item = read_u32(r)?;
            let len = read_u64(r)?;
            match fixed_size(item) {
                Some(size) => {
                    let bytes = i64::try_from(len.checked_mul(size)?).ok()?;
                    r.seek(SeekFrom::Current(bytes)).ok()?;
                }
                None => {
                    for _ in 0..len {
                        skip_value(r, item, depth + 1)?;
                    }
                }
            }
        }
        _ => return None,
    }
    Some(None)
}

/// The `general.alignment` a GGUF (version 2 or 3) declares, if it declares one and its
/// metadata can be walked; None otherwise (candle's reader then has the last word).
pub fn declared_alignment<R: Read + Seek>(r: &mut R) -> Option<u64> {
    let len = r.seek(SeekFrom::End(0)).ok()?;
    r.seek(SeekFrom::Start(0)).ok()?;
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).ok()?;
    let version = read_u32(r)?;
    if &magic != b"GGUF" || !(2..=3).contains(&version) {
        return None;
    }
    let _tensors = read_u64(r)?;
    let kvs = read_u64(r)?;
    for _ in 0..kvs {
        let key_len = read_u64(r)?;
        if key_len > len {
            return None;
        }
        let mut key = vec![0u8; key_len as usize];
        r.read_exact(&mut key).ok()?;
        let ty = read_u32(r)?;
        let value = skip_value(r, ty, 0)?;
        if key == b"general.alignment" {
            return value;
        }
    }
    None
}

/// Refuses an alignment llama.cpp would refuse: 0, or not a power of two.
pub fn check_alignment<R: Read + Seek>(r: &mut R) -> std::result::Result<(), String> {
    match declared_alignment(r) {
        Some(a) if a == 0 || !a.is_power_of_two() => Err(format!(
            "general.alignment is {a}; it must be a power of two (usually 32)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn kv_string(key: &str, value: &str) -> Vec<u8> {
        let mut v = (key.len() as u64).to_le_bytes().to_vec();
        v.extend(key.as_bytes());
        v.extend(8u32.to_le_bytes());
        v.extend((value.len() as u64).to_le_bytes());
        v.extend(value.as_bytes());
        v
    }

    fn header(alignment: u32) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        v.extend(3u64.to_le_bytes());
        v.extend(kv_string("general.architecture", "llama"));
        // An array of strings before the key, as a tokenizer's vocabulary would be.
        let key = "tokenizer.ggml.tokens";
        v.extend((key.len() as u64).to_le_bytes());
        v.extend(key.as_bytes());
        v.extend(9u32.to_le_bytes());
        v.extend(8u32.to_le_bytes());
        v.extend(2u64.to_le_bytes());
        for t in ["a", "bc"] {
            v.extend((t.len() as u64).to_le_bytes());
            v.extend(t.as_bytes());
        }
        let key = "general.alignment";
        v.extend((key.len() as u64).to_le_bytes());
        v.extend(key.as_bytes());
        v.extend(4u32.to_le_bytes());
        v.extend(alignment.to_le_bytes());
        v
    }

    #[test]
    fn finds_the_alignment_after_arrays() {
        assert_eq!(declared_alignment(&mut Cursor::new(header(64))), Some(64));
        assert!(check_alignment(&mut Cursor::new(header(32))).is_ok());
    }

    #[test]
    fn refuses_zero_and_odd_alignments() {
        for a in [0, 3, 48] {
            let e = check_alignment(&mut Cursor::new(header(a))).unwrap_err();
            assert!(e.contains("general.alignment"), "{e}");
        }
    }

    #[test]
    fn garbage_is_left_to_candle() {
        assert_eq!(
            declared_alignment(&mut Cursor::new(b"GGUF\x03".to_vec())),
            None
        );
        let mut h = header(0);
        h.truncate(40);
        assert_eq!(declared_alignment(&mut Cursor::new(h)), None);
    }
}
