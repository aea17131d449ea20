//! A minimal PNG writer: 8-bit RGB, no interlace, one IDAT, filter type 0 on every row.
//!
//! Written here over `flate2` rather than taken from the `png` crate because the output must
//! be reproducible byte for byte (the coordinator's aggregate is compared with the one-process
//! reference, and the auditor may recompute it): every choice that an encoder would make
//! (filter per row, chunk split, compression level) is fixed here, and the compressor's
//! version is pinned in Cargo.toml.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Encodes `rgb` (row-major, 3 bytes a pixel, `width * height * 3` bytes) as a PNG.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let row = width as usize * 3;
    if width == 0 || height == 0 || rgb.len() != row * height as usize {
        return Err(format!(
            "{} bytes of RGB for a {width}x{height} image",
            rgb.len()
        ));
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), compression 0, filter method 0, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    // Filter type 0 (None) on every row: adaptive filtering would compress better, but its
    // heuristic is one more thing that would have to stay identical forever.
    let mut z = ZlibEncoder::new(Vec::new(), Compression::new(6));
    for line in rgb.chunks_exact(row) {
        z.write_all(&[0]).map_err(|e| e.to_string())?;
        z.write_all(line).map_err(|e| e.to_string())?;
    }
    let idat = z.finish().map_err(|e| e.to_string())?;

    let mut out = Vec::with_capacity(SIGNATURE.len() + idat.len() + 3 * 12 + 13);
    out.extend_from_slice(&SIGNATURE);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_pixel_decodes_back() {
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9];
        let bytes = encode_rgb(2, 2, &rgb).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], &rgb);
    }

    #[test]
    fn sizes_that_disagree_are_refused() {
        assert!(encode_rgb(2, 2, &[0; 11]).is_err());
        assert!(encode_rgb(0, 2, &[]).is_err());
    }
}
