//! Places for the guests of vmtest runs that share the cores ([`GuestSlots`]).

/// Places for running guests, shared by the vmtest runs of one process (the suite boots two
/// architectures' runs side by side): each run is kept its share while it has guests waiting
/// to boot, and what a run no longer needs goes to the others. Guests are processor-bound
/// under TCG, so the places are what the cores hold.
#[derive(Debug)]
pub struct GuestSlots {
    pub(super) places: usize,
    state: std::sync::Mutex<Places>,
    changed: std::sync::Condvar,
}

/// Per run (by the order they joined): its share, its guests running, and its guests not yet
/// booted (`None` until the run says how many it has).
#[derive(Debug, Default)]
struct Places {
    share: Vec<usize>,
    running: Vec<usize>,
    waiting: Vec<Option<usize>>,
}

impl Places {
    /// The places kept for the runs other than `run`: what of its share each has not taken,
    /// as far as it has guests waiting.
    fn kept_from(&self, run: usize) -> usize {
        (0..self.share.len())
            .filter(|&r| r != run)
            .map(|r| {
                let unused = self.share[r].saturating_sub(self.running[r]);
                self.waiting[r].map_or(unused, |w| unused.min(w))
            })
            .sum()
    }
}

impl GuestSlots {
    pub fn new(places: usize) -> Self {
        GuestSlots {
            places: places.max(1),
            state: Default::default(),
            changed: Default::default(),
        }
    }

    /// A run's place in the sharing, `share` places kept for it: done by every run before
    /// any boots, so that none takes another's share while that one stages its guests.
    pub fn join(&self, share: usize) -> usize {
        let mut p = self.state.lock().expect("guest places");
        p.share.push(share.max(1));
        p.running.push(0);
        p.waiting.push(None);
        p.share.len() - 1
    }

    /// `run` has `guests` to boot.
    pub fn set_waiting(&self, run: usize, guests: usize) {
        self.state.lock().expect("guest places").waiting[run] = Some(guests);
        self.changed.notify_all();
    }

    /// Waits for a place for the next of `run`'s guests; it is given back when the guard
    /// drops.
    pub fn take(&self, run: usize) -> GuestSlot<'_> {
        let mut p = self.state.lock().expect("guest places");
        loop {
            let total: usize = p.running.iter().sum();
            let mine = p.running[run] < p.share[run];
            if total < self.places && (mine || total + p.kept_from(run) < self.places) {
                break;
            }
            p = self.changed.wait(p).expect("guest places");
        }
        p.running[run] += 1;
        if let Some(w) = p.waiting[run].as_mut() {
            *w = w.saturating_sub(1);
        }
        GuestSlot { slots: self, run }
    }
}

/// A place held by one booting guest.
pub struct GuestSlot<'a> {
    slots: &'a GuestSlots,
    run: usize,
}

impl Drop for GuestSlot<'_> {
    fn drop(&mut self) {
        self.slots.state.lock().expect("guest places").running[self.run] -= 1;
        self.slots.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs side by side boot no more guests at once than their places; the narrow run's
    /// share is kept while its one guest waits (the wide run's many never take it), and once
    /// that guest booted, the wide run takes every place it leaves.
    #[test]
    fn runs_side_by_side_keep_to_their_places_and_shares() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::time::Duration;
        let slots = GuestSlots::new(3);
        let (wide, narrow) = (slots.join(2), slots.join(1));
        slots.set_waiting(wide, 40);
        let running = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let (most, wide_most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let boot = |run: usize, ms: u64| {
            let _slot = slots.take(run);
            let now = running[run].fetch_add(1, SeqCst) + 1;
            most.fetch_max(now + running[1 - run].load(SeqCst), SeqCst);
            if run == wide {
                wide_most.fetch_max(now, SeqCst);
            }
            std::thread::sleep(Duration::from_millis(ms));
            running[run].fetch_sub(1, SeqCst);
        };
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while next.fetch_add(1, SeqCst) < 40 {
                        boot(wide, 20);
                    }
                });
            }
            // The narrow run stages its guest late: its share waits for it meanwhile.
            std::thread::sleep(Duration::from_millis(60));
            assert!(
                wide_most.load(SeqCst) <= 2,
                "the wide run took the narrow one's share"
            );
            slots.set_waiting(narrow, 1);
            boot(narrow, 10);
        });
        assert!(most.load(SeqCst) <= 3);
        assert_eq!(
            wide_most.load(SeqCst),
            3,
            "the narrow run's place went to the wide one"
        );
        assert_eq!(slots.state.lock().unwrap().running, [0, 0]);
    }
}
