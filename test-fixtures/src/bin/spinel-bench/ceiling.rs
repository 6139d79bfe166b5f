//! The same-run ceiling: what one core of this machine does with the
//! signature algorithm of every SVID (ECDSA P-256 with SHA-256, ring).

use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};

const WINDOW: Duration = Duration::from_millis(500);

/// Operations per second of `op` on this thread over [`WINDOW`].
fn rate(mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < WINDOW {
        for _ in 0..16 {
            op();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Prints the ceiling line.
pub fn print() {
    let rng = SystemRandom::new();
    let Ok(pkcs8) = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng) else {
        println!("ceiling: could not make a P-256 key");
        return;
    };
    let Ok(key) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
    else {
        println!("ceiling: could not load a P-256 key");
        return;
    };
    let message = [7u8; 300];
    let signature = match key.sign(&rng, &message) {
        Ok(s) => s.as_ref().to_vec(),
        Err(_) => {
            println!("ceiling: could not sign");
            return;
        }
    };
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
    let sign = rate(|| {
        let _ = key.sign(&rng, &message);
    });
    let verify = rate(|| {
        let _ = public.verify(&message, &signature);
    });
    let both = rate(|| {
        let _ = public.verify(&message, &signature);
        let _ = key.sign(&rng, &message);
    });
    let cores = cores();
    println!(
        "ceiling (one core, ring P-256): sign {:.1}k/s, verify {:.1}k/s, verify+sign {:.1}k/s; cores {cores}",
        sign / 1e3,
        verify / 1e3,
        both / 1e3
    );
}

/// How many cores this process may run on (1 when that cannot be read).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
