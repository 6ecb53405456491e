//! Acknowledging: a channel's deliveries, once handed over, in as few acks as order allows.
//!
//! A delivery is acknowledged once its agent's mailbox holds it, never before (the
//! delivery guarantee in the crate docs). Delivery tags number a channel's deliveries
//! from 1, and one ack with `multiple` up to tag `n` acknowledges every delivery up to
//! `n` still unacknowledged. So an ack with `multiple` is sent only up to a tag below which
//! every delivery was handed over. A delivery handed over while an earlier one is still
//! on its way (held by the other queue's consumer, or by another agent of the host
//! queue) is acknowledged alone at once, so one that is never handed over holds nothing
//! else back.
//!
//! One task per channel sends them, one at a time. The hand-overs that come while it
//! writes an ack are covered by the next one: under load, one ack frame for many
//! deliveries instead of one each, which spares the broker (on the same cores) the work
//! of one ack per message.
//!
//! RabbitMQ closes the channel (PRECONDITION_FAILED, "unknown delivery tag") on an ack
//! of a tag it no longer holds, `multiple` or not: [`Pending`] never names a tag twice,
//! and its `multiple` acks always name a tag not acknowledged alone before.

use std::collections::BTreeSet;

use lapin::{options::BasicAckOptions, types::DeliveryTag, Channel};
use tokio::sync::mpsc;

/// Where the consumers of one channel report each delivery they handed over.
#[derive(Clone)]
pub struct Acks(mpsc::UnboundedSender<DeliveryTag>);

impl Acks {
    /// Acknowledges what is reported for `channel`, by a task on the current runtime,
    /// until every `Acks` of it is dropped or an ack fails (the channel is gone: the
    /// broker delivers again what was not acknowledged, and the inbox drops the copies).
    pub fn start(channel: Channel) -> Self {
        let (report, mut reports) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut pending = Pending::default();
            let mut handed = Vec::new();
            while reports.recv_many(&mut handed, usize::MAX).await > 0 {
                let plan = pending.take(handed.drain(..));
                let multiple = plan.up_to.map(|tag| (tag, true));
                let alone = plan.alone.into_iter().map(|tag| (tag, false));
                for (tag, multiple) in multiple.into_iter().chain(alone) {
                    let options = BasicAckOptions { multiple };
                    if channel.basic_ack(tag, options).await.is_err() {
                        return;
                    }
                }
            }
        });
        Self(report)
    }

    /// Delivery `tag` of the channel is in its agent's mailbox (or was dropped on
    /// purpose): it is to be acknowledged.
    pub fn handed_over(&self, tag: DeliveryTag) {
        let _ = self.0.send(tag);
    }
}

/// Which acks to send for the deliveries handed over so far.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// One ack with `multiple` up to this tag.
    up_to: Option<DeliveryTag>,
    /// Acks of single deliveries, after a gap.
    alone: Vec<DeliveryTag>,
}

/// What a channel's acknowledger knows: every tag up to `through` is acknowledged, and so
/// are the tags of `alone` (each above `through + 1`).
#[derive(Default)]
struct Pending {
    through: DeliveryTag,
    alone: BTreeSet<DeliveryTag>,
}

impl Pending {
    /// The acks that acknowledge the `handed` deliveries (each reported once).
    fn take(&mut self, handed: impl IntoIterator<Item = DeliveryTag>) -> Plan {
        let mut handed: BTreeSet<DeliveryTag> = handed.into_iter().collect();
        let mut up_to = None;
        loop {
            let next = self.through + 1;
            if handed.remove(&next) {
                up_to = Some(next);
            } else if !self.alone.remove(&next) {
                break;
            }
            self.through = next;
        }
        self.alone.extend(&handed);
        Plan {
            up_to,
            alone: handed.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Pending, Plan};

    fn plan(up_to: Option<u64>, alone: &[u64]) -> Plan {
        Plan {
            up_to,
            alone: alone.to_vec(),
        }
    }

    #[test]
    fn deliveries_in_order_take_one_ack() {
        let mut pending = Pending::default();
        assert_eq!(pending.take([1]), plan(Some(1), &[]));
        assert_eq!(pending.take([3, 2, 4]), plan(Some(4), &[]));
    }

    #[test]
    fn a_delivery_still_on_its_way_holds_back_no_other() {
        let mut pending = Pending::default();
        // 2 is still being handed over: 3 and 4 go alone, 1 up to itself.
        assert_eq!(pending.take([1, 3, 4]), plan(Some(1), &[3, 4]));
        assert_eq!(pending.take([6]), plan(None, &[6]));
    }

    #[test]
    fn a_multiple_ack_never_names_a_tag_acknowledged_alone() {
        let mut pending = Pending::default();
        assert_eq!(pending.take([2, 3]), plan(None, &[2, 3]));
        // 1 closes the gap: the ack covers 1 only, 2 and 3 are done already.
        assert_eq!(pending.take([1]), plan(Some(1), &[]));
        assert_eq!(pending.take([4]), plan(Some(4), &[]));
        assert_eq!(pending.take([6]), plan(None, &[6]));
        // 5 and 7 with 6 acknowledged between them: up to 7, which is unacknowledged.
        assert_eq!(pending.take([7, 5]), plan(Some(7), &[]));
        assert_eq!(pending.take([8]), plan(Some(8), &[]));
    }
}
