//! Password hashing and checking (argon2id with the argon2 crate's defaults,
//! the OWASP parameters: 19 MiB, 2 passes, 1 lane) on a few threads of their
//! own, never on the executor nor under the hub lock.
//!
//! At most [`Passwords::THREADS`] hashes run at once (each takes 19 MiB and
//! tens of milliseconds of a core). More wait in a FIFO queue of at most
//! [`Passwords::QUEUE`] jobs; a job that does not fit is answered
//! [`Answer::Failed`] at once (the user is told to try again later). A
//! connection has at most one account command in flight while it is open,
//! but a closed connection's job stays queued: so a login, password change
//! or unregistration whose connection has closed by the time a thread takes
//! it is answered `Failed` without hashing, and reconnecting clients cannot
//! pile up work. A registration is always carried out: its answer, not the
//! connection, decides whether the account exists. Passwords are never
//! logged: [`chatproto::Password`]'s `Debug` is redacted and nothing here
//! prints one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use chatproto::server::{Answer, RequestId};
use chatproto::{Name, Password};

use crate::outbox::ConnIo;
use crate::store::{Answers, Job, WriterTx};

/// The connection that asked, to see whether it is still there: not kept
/// alive by the job.
#[derive(Clone, Debug, Default)]
pub(crate) struct Asker(Weak<ConnIo>);

impl Asker {
    pub(crate) fn new(io: &Arc<ConnIo>) -> Self {
        Self(Arc::downgrade(io))
    }

    /// True once the connection is closed or closing. An asker made with
    /// `default()` (no connection known) is never gone.
    fn gone(&self) -> bool {
        if self.0.ptr_eq(&Weak::new()) {
            return false;
        }
        self.0
            .upgrade()
            .is_none_or(|io| io.close_reason().is_some())
    }
}

/// Work for a password thread: what to check or hash, and where the
/// request goes next.
#[derive(Debug)]
pub(crate) enum HashJob {
    /// Hash, then the writer creates the account.
    Register {
        id: RequestId,
        account: Name,
        password: Password,
    },
    /// Check, then the writer reads the offline messages.
    Login {
        id: RequestId,
        account: Name,
        password: Password,
        hash: String,
        asker: Asker,
    },
    /// Check `old`, hash `new`, then the writer keeps it.
    ChangePassword {
        id: RequestId,
        account: Name,
        old: Password,
        new: Password,
        hash: String,
        asker: Asker,
    },
    /// Check, then the writer deletes the account.
    Unregister {
        id: RequestId,
        account: Name,
        password: Password,
        hash: String,
        asker: Asker,
    },
}

impl HashJob {
    fn id(&self) -> RequestId {
        match self {
            Self::Register { id, .. }
            | Self::Login { id, .. }
            | Self::ChangePassword { id, .. }
            | Self::Unregister { id, .. } => *id,
        }
    }

    /// True for a check whose connection has gone: nobody waits for it.
    fn abandoned(&self) -> bool {
        match self {
            Self::Register { .. } => false,
            Self::Login { asker, .. }
            | Self::ChangePassword { asker, .. }
            | Self::Unregister { asker, .. } => asker.gone(),
        }
    }
}

/// The queue to the password threads.
#[derive(Clone, Debug)]
pub(crate) struct Passwords {
    tx: async_channel::Sender<HashJob>,
    /// Set while the queue is full, so that is logged once per episode.
    full: Arc<AtomicBool>,
}

impl Passwords {
    /// Password threads: hashes at once, at most. Two, or one on a single
    /// core: a burst of logins must not take every core from the chat.
    pub(crate) const THREADS: usize = 2;

    /// Jobs waiting at most. At about 25 ms a hash on two threads, a full
    /// queue is about 3 s of work: a reconnect burst of a few hundred
    /// logins still gets through, while a flood of `/login`s from many
    /// connections is refused at once instead of making every user wait
    /// minutes (and the memory stays small: a job is under 1 KiB).
    pub(crate) const QUEUE: usize = 256;

    /// Starts the threads; they pass requests on to `writer` and answers to
    /// `answers`, and stop when every [`Passwords`] is dropped.
    pub(crate) fn start(writer: WriterTx, answers: Answers) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start_with(
            writer,
            answers,
            Self::THREADS.min(cores).max(1),
            Self::QUEUE,
        )
    }

    /// [`Passwords::start`] with `threads` threads and room for `queue` jobs.
    fn start_with(writer: WriterTx, answers: Answers, threads: usize, queue: usize) -> Self {
        let (tx, rx) = async_channel::bounded::<HashJob>(queue);
        for i in 0..threads {
            let (rx, writer, answers) = (rx.clone(), writer.clone(), answers.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("chatd-passwords-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv_blocking() {
                        let id = job.id();
                        if job.abandoned() {
                            log::debug!("{id:?}: connection gone, not checked");
                            let _ = answers.try_send((id, Answer::Failed));
                            continue;
                        }
                        // A panic must not leave the request unanswered nor
                        // end the thread.
                        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            work(job, &writer, &answers)
                        }))
                        .unwrap_or_else(|_| Err("password thread panicked".into()));
                        if let Err(why) = done {
                            log::error!("{id:?}: {why}");
                            let _ = answers.try_send((id, Answer::Failed));
                        }
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start password thread {i}: {e}");
            }
        }
        Self {
            tx,
            full: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues `job`; false if the queue is full or the threads are gone
    /// (then the caller answers `Failed`).
    pub(crate) fn send(&self, job: HashJob) -> bool {
        self.send_or_id(job).is_none()
    }

    /// Queues `job`; if the queue is full or the threads are gone, the id to
    /// answer `Failed`.
    pub(crate) fn send_or_id(&self, job: HashJob) -> Option<RequestId> {
        match self.tx.try_send(job) {
            Ok(()) => {
                let half = self.tx.capacity().unwrap_or(Self::QUEUE) / 2;
                if self.tx.len() < half && self.full.swap(false, Ordering::Relaxed) {
                    log::info!("password queue has room again");
                }
                None
            }
            Err(async_channel::TrySendError::Full(job)) => {
                if !self.full.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "password queue full ({} jobs): account commands are refused \
                         ('try again later') until it drains",
                        self.tx.len()
                    );
                }
                Some(job.id())
            }
            Err(async_channel::TrySendError::Closed(job)) => Some(job.id()),
        }
    }
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`)
/// with a fresh random salt.
pub(crate) fn hash(password: &Password) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// True if `password` matches the PHC string `hash` (with the parameters
/// stored in it, so older hashes keep working if the defaults change).
pub(crate) fn verify(password: &Password, hash: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("stored hash unreadable: {e}"))?;
    Ok(Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok())
}

/// One job: check or hash, then the answer or the writer's next step.
fn work(job: HashJob, writer: &WriterTx, answers: &Answers) -> Result<(), String> {
    let next = match job {
        HashJob::Register {
            id,
            account,
            password,
        } => Job::Create {
            id,
            account,
            hash: hash(&password)?,
        },
        HashJob::Login {
            id,
            account,
            password,
            hash,
            ..
        } => {
            if !verify(&password, &hash)? {
                let _ = answers.try_send((id, Answer::WrongPassword));
                return Ok(());
            }
            Job::FinishLogin { id, account }
        }
        HashJob::ChangePassword {
            id,
            account,
            old,
            new,
            hash: stored,
            ..
        } => {
            if !verify(&old, &stored)? {
                let _ = answers.try_send((id, Answer::WrongPassword));
                return Ok(());
            }
            Job::SetHash {
                id,
                account,
                hash: hash(&new)?,
            }
        }
        HashJob::Unregister {
            id,
            account,
            password,
            hash,
            ..
        } => {
            if !verify(&password, &hash)? {
                let _ = answers.try_send((id, Answer::WrongPassword));
                return Ok(());
            }
            Job::Delete { id, account }
        }
    };
    if writer.send(next) {
        Ok(())
    } else {
        Err("the store thread is gone".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let right = Password::try_from("correct-horse").unwrap();
        let wrong = Password::try_from("correct-horsf").unwrap();
        let h = hash(&right).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify(&right, &h).unwrap());
        assert!(!verify(&wrong, &h).unwrap());
        assert!(verify(&right, "not a hash").is_err());
        assert_ne!(h, hash(&right).unwrap(), "a fresh salt each time");
    }

    fn register(id: u64) -> HashJob {
        HashJob::Register {
            id: RequestId::new(id),
            account: Name::try_from("ann").unwrap(),
            password: Password::try_from("correct-horse").unwrap(),
        }
    }

    /// A writer nobody reads, and the answers channel.
    fn channels() -> (
        WriterTx,
        std::sync::mpsc::Receiver<Job>,
        Answers,
        async_channel::Receiver<(RequestId, Answer)>,
    ) {
        let (tx, jobs) = std::sync::mpsc::channel();
        let (answers, answered) = async_channel::unbounded();
        (WriterTx::for_tests(tx), jobs, answers, answered)
    }

    /// A job that does not fit the queue is refused at once (the caller
    /// answers it `Failed`), while the queued ones stay.
    #[test]
    fn a_job_past_the_queue_bound_is_refused_at_once() {
        // No thread takes jobs: the queue fills.
        let (tx, _rx) = async_channel::bounded(2);
        let passwords = Passwords {
            tx,
            full: Arc::new(AtomicBool::new(false)),
        };
        assert_eq!(passwords.send_or_id(register(1)), None);
        assert_eq!(passwords.send_or_id(register(2)), None);
        assert_eq!(passwords.send_or_id(register(3)), Some(RequestId::new(3)));
        assert!(!passwords.send(register(4)));
    }

    /// A login whose connection has gone is answered `Failed` without being
    /// checked; one whose connection is open is checked (a wrong password
    /// here).
    #[test]
    fn a_check_for_a_closed_connection_is_skipped() {
        use crate::outbox::SendBudget;
        use chatproto::server::ConnId;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let budget = Arc::new(SendBudget::new(1 << 16, 1 << 20));
        let io = Arc::new(ConnIo::new(
            ConnId::new(1),
            smol::Async::new(server).unwrap(),
            budget,
        ));
        let stored = hash(&Password::try_from("correct-horse").unwrap()).unwrap();
        let login = |id, asker| HashJob::Login {
            id: RequestId::new(id),
            account: Name::try_from("ann").unwrap(),
            password: Password::try_from("wrong-horse").unwrap(),
            hash: stored.clone(),
            asker,
        };
        let open = Asker::new(&io);
        let gone = Asker::new(&Arc::new(ConnIo::new(
            ConnId::new(2),
            smol::Async::new(std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap())
                .unwrap(),
            Arc::new(SendBudget::new(1 << 16, 1 << 20)),
        )));
        assert!(gone.gone() && !open.gone() && !Asker::default().gone());
        let (writer, jobs, answers, answered) = channels();
        let passwords = Passwords::start_with(writer, answers, 1, 4);
        assert!(passwords.send(login(1, gone)));
        assert!(passwords.send(login(2, open)));
        let next = || answered.recv_blocking().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(next(), (RequestId::new(1), Answer::Failed));
        assert_eq!(next(), (RequestId::new(2), Answer::WrongPassword));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(jobs.try_recv().is_err(), "nothing reached the writer");
    }
}
