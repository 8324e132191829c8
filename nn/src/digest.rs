//! A fingerprint of a network's final state, for reproducibility checks: two runs ended with
//! bitwise-identical parameters and BN statistics exactly when their digests agree.

use crate::network::Network;
use sha2::{Digest, Sha256};

/// SHA-256 over every parameter and statistic in visit order: the full name, the shape, then the
/// values' f32 bits little-endian. Lower-case hex.
pub fn parameters_sha256(net: &mut Network) -> String {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 4 * 1024];
    net.visit_params(&mut |p| {
        hasher.update(p.layer.as_bytes());
        hasher.update(b".");
        hasher.update(p.name.as_bytes());
        hasher.update([0]);
        hasher.update((p.shape.len() as u64).to_le_bytes());
        for &d in p.shape {
            hasher.update((d as u64).to_le_bytes());
        }
        for chunk in p.value.chunks(buf.len() / 4) {
            for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
                dst.copy_from_slice(&v.to_bits().to_le_bytes());
            }
            hasher.update(&buf[..4 * chunk.len()]);
        }
    });
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{seed_network, Exec, Variant};

    #[test]
    fn the_digest_sees_every_bit_of_every_parameter_and_statistic() {
        let mut net = seed_network(Variant::Bn, 3, Exec::default());
        let base = parameters_sha256(&mut net);
        assert_eq!(base.len(), 64);
        assert_eq!(base, parameters_sha256(&mut net));
        assert_ne!(
            base,
            parameters_sha256(&mut seed_network(Variant::Bn, 4, Exec::default()))
        );
        // One flipped low bit anywhere changes it: the first weight, and the last statistic.
        let mut first = true;
        net.visit_params(&mut |p| {
            if first {
                p.value[0] = f32::from_bits(p.value[0].to_bits() ^ 1);
                first = false;
            }
        });
        let flipped = parameters_sha256(&mut net);
        assert_ne!(base, flipped);
        let mut last_name = String::new();
        net.visit_params(&mut |p| last_name = p.full_name());
        net.visit_params(&mut |p| {
            if p.full_name() == last_name {
                let v = p.value.last_mut().expect("non-empty");
                *v = f32::from_bits(v.to_bits() ^ 1);
            }
        });
        assert_ne!(flipped, parameters_sha256(&mut net));
    }
}
