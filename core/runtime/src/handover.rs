//! Hand-over of parsed messages through an in-process transport.
//!
//! A transport only moves text, so a receiver normally parses what a sender serialised.
//! When the transport delivers on the publishing thread, within the `publish` call and
//! with the very same text (the `local` transport does), the receiving endpoint can take
//! the message the sender already built and validated instead of parsing it again. The
//! text is recognised by address and length, which cannot change while it is borrowed.

use std::cell::RefCell;

use agency_sdk::Message;

thread_local! {
    static IN_FLIGHT: RefCell<Option<InFlight>> = const { RefCell::new(None) };
}

struct InFlight {
    address: usize,
    length: usize,
    message: Message,
}

/// Runs `publish` with `message` on offer to receivers of exactly `body`.
pub(crate) fn offering<R>(body: &str, message: Message, publish: impl FnOnce() -> R) -> R {
    let offer = InFlight {
        address: body.as_ptr() as usize,
        length: body.len(),
        message,
    };
    let previous = IN_FLIGHT.with(|slot| slot.replace(Some(offer)));
    let result = publish();
    IN_FLIGHT.with(|slot| *slot.borrow_mut() = previous);
    result
}

/// The message on offer if `body` is its text: taken for its one recipient, or cloned
/// for each recipient of a broadcast.
pub(crate) fn take(body: &str) -> Option<Message> {
    IN_FLIGHT.with(|slot| {
        let mut slot = slot.borrow_mut();
        let offer = slot.as_ref()?;
        if offer.address != body.as_ptr() as usize || offer.length != body.len() {
            return None;
        }
        if offer.message.is_broadcast() {
            Some(offer.message.clone())
        } else {
            slot.take().map(|offer| offer.message)
        }
    })
}
