//! Media slots: at most a class's `concurrency` media children at a time, however many of its deliveries
//! are in flight.
//!
//! A worker takes `concurrency + prefetch` deliveries of a class (`[worker] prefetch`, image 1 by default).
//! Every job does its database and storage steps, fetching its original included, as soon as it arrives, and
//! waits for a slot only to run its media child; so while a class's children run, the next job is already
//! prepared, and a core never idles through the steps between two children. A bulk lane's jobs share the
//! slots of their class, as they share its deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::queue::JobClass;

/// One semaphore per class, sized to its concurrency. A class without one runs its children unlimited
/// (tests and tools that build a context by hand).
#[derive(Debug, Clone, Default)]
pub struct MediaSlots {
    by_class: BTreeMap<String, Arc<Semaphore>>,
}

impl MediaSlots {
    /// Slots for each `(class, concurrency)`.
    pub fn new(classes: &[(JobClass, usize)]) -> Self {
        MediaSlots {
            by_class: classes
                .iter()
                .map(|(c, n)| (c.as_str().to_owned(), Arc::new(Semaphore::new((*n).max(1)))))
                .collect(),
        }
    }

    /// Waits for a slot of `class` (of its live class, for a bulk lane). `None`: the class is unlimited.
    pub async fn acquire(&self, class: &JobClass) -> Option<OwnedSemaphorePermit> {
        let (live, _) = crate::routing::lane_of(class.as_str());
        let slots = self
            .by_class
            .get(live)
            .or_else(|| self.by_class.get(class.as_str()))?;
        slots.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_class_runs_at_most_its_concurrency_and_its_bulk_lane_shares_it() {
        let image = JobClass::new("image").unwrap();
        let slots = MediaSlots::new(&[(image.clone(), 1)]);
        let held = slots.acquire(&image).await.expect("image is limited");
        let bulk = image.bulk_lane().unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), slots.acquire(&bulk));
        assert!(
            waiting.await.is_err(),
            "the bulk lane waits for the image slot"
        );
        drop(held);
        assert!(slots.acquire(&bulk).await.is_some());
        assert!(slots
            .acquire(&JobClass::new("video").unwrap())
            .await
            .is_none());
    }
}
