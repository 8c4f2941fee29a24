//! Password hashing and checking (argon2id with the argon2 crate's defaults,
//! the OWASP parameters: 19 MiB, 2 passes, 1 lane) on a few threads of their
//! own, never on the executor nor under the hub lock.
//!
//! At most [`Passwords::THREADS`] hashes run at once (each takes 19 MiB and
//! tens of milliseconds of a core). More wait in a FIFO queue: each
//! connection has at most one account command in flight (its later lines
//! wait in the state machine), so the queue holds at most one job per
//! connection. Passwords are never logged: [`chatproto::Password`]'s `Debug`
//! is redacted and nothing here prints one.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use chatproto::server::{Answer, RequestId};
use chatproto::{Name, Password};

use crate::store::{Answers, Job, WriterTx};

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
    },
    /// Check `old`, hash `new`, then the writer keeps it.
    ChangePassword {
        id: RequestId,
        account: Name,
        old: Password,
        new: Password,
        hash: String,
    },
    /// Check, then the writer deletes the account.
    Unregister {
        id: RequestId,
        account: Name,
        password: Password,
        hash: String,
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
}

/// The queue to the password threads.
#[derive(Clone, Debug)]
pub(crate) struct Passwords {
    tx: async_channel::Sender<HashJob>,
}

impl Passwords {
    /// Password threads: hashes at once, at most. Two, or one on a single
    /// core: a burst of logins must not take every core from the chat.
    pub(crate) const THREADS: usize = 2;

    /// Starts the threads; they pass requests on to `writer` and answers to
    /// `answers`, and stop when every [`Passwords`] is dropped.
    pub(crate) fn start(writer: WriterTx, answers: Answers) -> Self {
        let (tx, rx) = async_channel::unbounded::<HashJob>();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..Self::THREADS.min(cores).max(1) {
            let (rx, writer, answers) = (rx.clone(), writer.clone(), answers.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("chatd-passwords-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv_blocking() {
                        let id = job.id();
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
        Self { tx }
    }

    /// Queues `job`; false if the threads are gone.
    pub(crate) fn send(&self, job: HashJob) -> bool {
        self.tx.try_send(job).is_ok()
    }

    /// Queues `job`; if the threads are gone, the id to answer `Failed`.
    pub(crate) fn send_or_id(&self, job: HashJob) -> Option<RequestId> {
        self.tx.try_send(job).err().map(|e| e.into_inner().id())
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
}
