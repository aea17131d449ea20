//! RSA-PSS-SHA256 verification for an auditor that checks many signatures under a few keys.
//!
//! Why not [`crate::crypto::verify`]: the `rsa` crate's public operation (`modpow` in
//! `num-bigint-dig`) takes ~180 µs for a 2048-bit key on the development machine, and a replay
//! checks one signature per result, heartbeat, grant and seal: it made the auditor ~9× slower.
//! A verifier made once per key keeps its Montgomery constants and raises to the public exponent
//! 65537 by 16 squarings and one multiplication, ~5× faster. Verification handles only public
//! data, so nothing here needs to be constant time.
//!
//! It accepts exactly what [`crate::crypto::verify`] accepts (EMSA-PSS, MGF1-SHA256, a salt of
//! 32 bytes, as [`crate::crypto::sign`] makes them); the tests check the two agree on valid,
//! altered and random signatures. A key with another exponent is verified by the `rsa` crate.

use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest, Sha256};

const HASH_LEN: usize = 32;
const SALT_LEN: usize = 32;

/// One key's verifier.
#[derive(Debug, Clone)]
pub struct PssVerifier {
    key: RsaPublicKey,
    /// `None` where the exponent is not 65537: the `rsa` crate verifies.
    monty: Option<Montgomery>,
}

/// The modulus in 64-bit limbs (least significant first) and its Montgomery constants.
#[derive(Debug, Clone)]
struct Montgomery {
    n: Vec<u64>,
    /// `-n^-1 mod 2^64`.
    n0: u64,
    /// `R^2 mod n`, `R = 2^(64 * limbs)`.
    r2: Vec<u64>,
}

impl PssVerifier {
    pub fn new(key: &RsaPublicKey) -> Self {
        let monty = (*key.e() == BigUint::from(65_537u32)).then(|| Montgomery::new(key.n()));
        Self {
            key: key.clone(),
            monty,
        }
    }

    /// Whether `signature` is an RSA-PSS-SHA256 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Some(monty) = &self.monty else {
            return crate::crypto::verify(&self.key, message, signature);
        };
        let size = self.key.size();
        if signature.len() != size {
            return false;
        }
        let k = monty.n.len();
        let Some(s) = limbs_of_be(signature, k) else {
            return false;
        };
        if !less_than(&s, &monty.n) {
            return false;
        }
        let m = monty.pow_65537(&s);
        // m < n, so it fits in the key's size.
        let mut em = vec![0u8; size];
        for (i, byte) in em.iter_mut().rev().enumerate() {
            *byte = (m[i / 8] >> (8 * (i % 8))) as u8;
        }
        emsa_pss_verify(&Sha256::digest(message), &mut em, self.key.n().bits())
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 9.1.2) with SHA-256, MGF1-SHA256 and a 32-byte salt, over `em` as
/// the key's size in bytes.
fn emsa_pss_verify(m_hash: &[u8], em: &mut [u8], key_bits: usize) -> bool {
    let em_bits = key_bits - 1;
    let em_len = em_bits.div_ceil(8);
    let skip = em.len() - em_len;
    let em = &mut em[skip..];
    if em_len < HASH_LEN + SALT_LEN + 2 || em[em_len - 1] != 0xbc {
        return false;
    }
    let (db, rest) = em.split_at_mut(em_len - HASH_LEN - 1);
    let h = &rest[..HASH_LEN];
    let unused_bits = 8 * em_len - em_bits;
    if db[0] & !(0xff >> unused_bits) != 0 {
        return false;
    }
    mgf1_xor(db, h);
    db[0] &= 0xff >> unused_bits;
    let (zeroes, tail) = db.split_at(db.len() - SALT_LEN - 1);
    if zeroes.iter().any(|&b| b != 0) || tail[0] != 0x01 {
        return false;
    }
    let salt = &tail[1..];
    let h2 = Sha256::new()
        .chain_update([0u8; 8])
        .chain_update(m_hash)
        .chain_update(salt)
        .finalize();
    h2.as_slice() == h
}

/// `out ^= MGF1-SHA256(seed, out.len())`.
fn mgf1_xor(out: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in out.chunks_mut(HASH_LEN).enumerate() {
        let mask = Sha256::new()
            .chain_update(seed)
            .chain_update((counter as u32).to_be_bytes())
            .finalize();
        for (o, m) in chunk.iter_mut().zip(mask) {
            *o ^= m;
        }
    }
}

fn to_limbs(x: &BigUint, limbs: usize) -> Vec<u64> {
    let mut out = vec![0u64; limbs];
    for (i, b) in x.to_bytes_le().iter().enumerate() {
        out[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    out
}

/// Big-endian bytes as `limbs` limbs, `None` if they do not fit.
fn limbs_of_be(bytes: &[u8], limbs: usize) -> Option<Vec<u64>> {
    let mut out = vec![0u64; limbs];
    for (i, b) in bytes.iter().rev().enumerate() {
        if *b != 0 {
            *out.get_mut(i / 8)? |= u64::from(*b) << (8 * (i % 8));
        }
    }
    Some(out)
}

/// `a < b`, both of the same number of limbs.
fn less_than(a: &[u64], b: &[u64]) -> bool {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .find(|(x, y)| x != y)
        .is_some_and(|(x, y)| x < y)
}

#[cfg(test)]
fn from_limbs(limbs: &[u64]) -> BigUint {
    let bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
    BigUint::from_bytes_le(&bytes)
}

impl Montgomery {
    fn new(n: &BigUint) -> Self {
        let limbs = n.bits().div_ceil(64);
        let n_limbs = to_limbs(n, limbs);
        // Newton's iteration for n^-1 mod 2^64 (n is odd): each step doubles the correct bits.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n_limbs[0].wrapping_mul(inv)));
        }
        let r2 = (BigUint::from(1u8) << (128 * limbs)) % n;
        Self {
            n: n_limbs,
            n0: inv.wrapping_neg(),
            r2: to_limbs(&r2, limbs),
        }
    }

    /// `out = a * b / R mod n` (CIOS), for `a, b < n`; `t` is scratch of `limbs + 2`.
    fn mul(&self, a: &[u64], b: &[u64], t: &mut [u64], out: &mut [u64]) {
        let n = &self.n;
        let k = n.len();
        t.fill(0);
        for &bi in b {
            let mut carry: u128 = 0;
            for j in 0..k {
                let x = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + carry;
                t[j] = x as u64;
                carry = x >> 64;
            }
            let x = u128::from(t[k]) + carry;
            t[k] = x as u64;
            t[k + 1] = (x >> 64) as u64;
            let m = t[0].wrapping_mul(self.n0);
            let mut carry = (u128::from(t[0]) + u128::from(m) * u128::from(n[0])) >> 64;
            for j in 1..k {
                let x = u128::from(t[j]) + u128::from(m) * u128::from(n[j]) + carry;
                t[j - 1] = x as u64;
                carry = x >> 64;
            }
            let x = u128::from(t[k]) + carry;
            t[k - 1] = x as u64;
            t[k] = t[k + 1] + (x >> 64) as u64;
            t[k + 1] = 0;
        }
        // The result is below 2n: subtract n once if it is not below n.
        let at_least_n = t[k] != 0
            || (0..k)
                .rev()
                .find(|&j| t[j] != n[j])
                .is_none_or(|j| t[j] > n[j]);
        if at_least_n {
            let mut borrow = false;
            for j in 0..k {
                let (d, b1) = t[j].overflowing_sub(n[j]);
                let (d, b2) = d.overflowing_sub(u64::from(borrow));
                t[j] = d;
                borrow = b1 || b2;
            }
        }
        out.copy_from_slice(&t[..k]);
    }

    /// `out = a^2 / R mod n`, for `a < n`: the square with each cross product computed once,
    /// then a Montgomery reduction; `w` is scratch of `2 * limbs + 1`.
    fn sqr(&self, a: &[u64], w: &mut [u64], out: &mut [u64]) {
        let n = &self.n[..];
        let k = n.len();
        let a = &a[..k];
        let w = &mut w[..2 * k + 1];
        w.fill(0);
        // The cross products a[i] * a[j], i < j.
        for i in 0..k {
            let mut carry: u128 = 0;
            for j in i + 1..k {
                let x = u128::from(w[i + j]) + u128::from(a[i]) * u128::from(a[j]) + carry;
                w[i + j] = x as u64;
                carry = x >> 64;
            }
            w[i + k] = carry as u64;
        }
        // Doubled, plus the squares on the diagonal.
        let mut top = 0u64;
        for limb in w[..2 * k].iter_mut() {
            let next = *limb >> 63;
            *limb = (*limb << 1) | top;
            top = next;
        }
        let mut carry: u128 = 0;
        for i in 0..k {
            let sq = u128::from(a[i]) * u128::from(a[i]);
            let lo = u128::from(w[2 * i]) + (sq & u128::from(u64::MAX)) + carry;
            w[2 * i] = lo as u64;
            let hi = u128::from(w[2 * i + 1]) + (sq >> 64) + (lo >> 64);
            w[2 * i + 1] = hi as u64;
            carry = hi >> 64;
        }
        // Montgomery reduction: k times, clear the lowest limb by adding a multiple of n.
        for i in 0..k {
            let m = w[i].wrapping_mul(self.n0);
            let mut carry: u128 = 0;
            for j in 0..k {
                let x = u128::from(w[i + j]) + u128::from(m) * u128::from(n[j]) + carry;
                w[i + j] = x as u64;
                carry = x >> 64;
            }
            let mut at = i + k;
            while carry != 0 {
                let x = u128::from(w[at]) + carry;
                w[at] = x as u64;
                carry = x >> 64;
                at += 1;
            }
        }
        let r = &mut w[k..];
        // Below 2n: subtract n once if it is not below n.
        let at_least_n = r[k] != 0 || !less_than(&r[..k], n);
        if at_least_n {
            let mut borrow = false;
            for j in 0..k {
                let (d, b1) = r[j].overflowing_sub(n[j]);
                let (d, b2) = d.overflowing_sub(u64::from(borrow));
                r[j] = d;
                borrow = b1 || b2;
            }
        }
        out.copy_from_slice(&r[..k]);
    }

    /// `s^65537 mod n`.
    fn pow_65537(&self, s: &[u64]) -> Vec<u64> {
        let k = self.n.len();
        let mut t = vec![0u64; k + 2];
        let mut s_m = vec![0u64; k];
        self.mul(s, &self.r2, &mut t, &mut s_m);
        let mut x = s_m.clone();
        let mut y = vec![0u64; k];
        let mut w = vec![0u64; 2 * k + 1];
        for _ in 0..8 {
            self.sqr(&x, &mut w, &mut y);
            self.sqr(&y, &mut w, &mut x);
        }
        self.mul(&x, &s_m, &mut t, &mut y);
        let mut one = vec![0u64; k];
        one[0] = 1;
        self.mul(&y, &one, &mut t, &mut x);
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{sign, verify};
    use rsa::rand_core::{OsRng, RngCore};
    use rsa::RsaPrivateKey;

    /// The fast verifier and the `rsa` crate agree: on valid signatures, on signatures and
    /// messages with a bit flipped, on random bytes, on values at or above the modulus and
    /// on the wrong length, for keys of 2048 and 3072 bits.
    #[test]
    fn agrees_with_the_rsa_crate() {
        for bits in [2048, 3072] {
            let key = RsaPrivateKey::new(&mut OsRng, bits).unwrap();
            let public = key.to_public_key();
            let fast = PssVerifier::new(&public);
            assert!(fast.monty.is_some());
            for i in 0..40u32 {
                let message = format!("statement {i}").into_bytes();
                let sig = sign(&key, &message, &mut OsRng);
                assert!(verify(&public, &message, &sig));
                assert!(fast.verify(&message, &sig), "{bits} bits, {i}");
                let mut flipped = sig.clone();
                let at = (OsRng.next_u32() as usize) % flipped.len();
                flipped[at] ^= 1 << (i % 8);
                assert_eq!(
                    fast.verify(&message, &flipped),
                    verify(&public, &message, &flipped)
                );
                assert!(!fast.verify(&message, &flipped));
                assert!(!fast.verify(b"another statement", &sig));
                let mut random = vec![0u8; sig.len()];
                OsRng.fill_bytes(&mut random);
                assert_eq!(
                    fast.verify(&message, &random),
                    verify(&public, &message, &random)
                );
            }
            let message = b"m";
            let sig = sign(&key, message, &mut OsRng);
            assert!(!fast.verify(message, &sig[1..]));
            let mut long = sig.clone();
            long.push(0);
            assert!(!fast.verify(message, &long));
            let n = public.n().to_bytes_be();
            assert!(!fast.verify(message, &n));
            assert_eq!(fast.verify(message, &n), verify(&public, message, &n));
            assert!(!fast.verify(message, &vec![0xff; sig.len()]));
            assert!(!fast.verify(message, &vec![0; sig.len()]));
        }
    }

    /// Montgomery exponentiation equals `modpow` on arbitrary values below the modulus.
    #[test]
    fn the_power_is_modpow() {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let n = key.n().clone();
        let monty = Montgomery::new(&n);
        for _ in 0..50 {
            let mut bytes = vec![0u8; 256];
            OsRng.fill_bytes(&mut bytes);
            let s = BigUint::from_bytes_be(&bytes) % &n;
            let want = s.modpow(&BigUint::from(65_537u32), &n);
            assert_eq!(from_limbs(&monty.pow_65537(&to_limbs(&s, 32))), want);
        }
    }
}
