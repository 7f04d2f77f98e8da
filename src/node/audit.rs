//! The queue of audit notes waiting to be proposed: evals, hot-patches and lambdas change no
//! replicated state, so their notes wait here and one task (`ops::audit::flush`) proposes
//! them in batches; an eval never waits for Raft.

use std::sync::Mutex;

use push_protocol::AuditNote;
use tokio::sync::mpsc;

/// The queue of notes waiting to be proposed.
pub struct Recorder {
    tx: mpsc::UnboundedSender<AuditNote>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<AuditNote>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Recorder {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Recorder {
    /// Queues one note.
    pub fn note(&self, note: AuditNote) {
        // Fails only once the flusher has stopped, at shutdown.
        let _ = self.tx.send(note);
    }

    /// The receiving end, for the one task that proposes notes (None once taken).
    pub fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<AuditNote>> {
        self.rx.lock().ok().and_then(|mut rx| rx.take())
    }
}
