//! The kubelet's `GET /pods` body and the `k8s:` selectors made from it.
//! Invariants: no panic; every selector made is a valid `k8s:` selector
//! that round-trips through its text and appears once; every container
//! status with an ID is found by that ID.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use spinel_agent::attestor::workload::k8s::selectors::{container_selectors, pod_selectors};
use spinel_agent::attestor::workload::k8s::{PodList, SELECTOR_TYPE};
use spinel_spiffe::Selector;

fn check(selectors: &[Selector]) {
    let mut seen = BTreeSet::new();
    for s in selectors {
        assert_eq!(s.kind, SELECTOR_TYPE);
        assert!(s.validate().is_ok());
        assert_eq!(Selector::parse(&s.to_string()).as_ref(), Ok(s));
        assert!(seen.insert(s), "selector {s} made twice");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(list) = PodList::parse(data) else {
        return;
    };
    for pod in &list.items {
        if let Ok(selectors) = pod_selectors(pod) {
            check(&selectors);
            let count = format!("pod-image-count:{}", pod.status.container_statuses.len());
            assert!(selectors.iter().any(|s| s.value == count));
        }
        let status = &pod.status;
        for c in status
            .container_statuses
            .iter()
            .chain(&status.init_container_statuses)
            .chain(&status.ephemeral_container_statuses)
        {
            if let Ok(selectors) = container_selectors(c) {
                check(&selectors);
            }
            if !c.container_id.is_empty() {
                assert!(
                    pod.find_container(c.bare_id()).is_some(),
                    "container {:?} not found by its ID",
                    c.container_id
                );
            }
        }
    }
});
