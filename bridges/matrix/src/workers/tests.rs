//! The workers' queues with a performer that is held at will: a user's actions keep their
//! order, a full queue refuses with a reason without touching other users, and idle
//! workers end and come back.

use std::time::Duration;

use tokio::sync::Semaphore;

use super::*;

/// Records what it carries out; each action waits for a permit of `gate`.
#[derive(Debug)]
struct Fake {
    done: Mutex<Vec<(String, String)>>,
    gate: Semaphore,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake {
            done: Mutex::default(),
            gate: Semaphore::new(0),
        }
    }
}

impl Perform for Arc<Fake> {
    async fn perform(&self, user: &UserRef, action: Action) -> bool {
        self.gate.acquire().await.expect("gate open").forget();
        let Action::Raw { line, .. } = action else {
            unreachable!("the tests queue raw lines")
        };
        let stop = line == "stop";
        self.done.lock().unwrap().push((user.0.clone(), line));
        !stop
    }
}

fn line(text: impl Into<String>) -> Action {
    Action::Raw {
        server: "hs".into(),
        line: text.into(),
    }
}

fn user(name: &str) -> UserRef {
    UserRef(format!("{name}@example.org"))
}

impl Fake {
    fn lines_of(&self, name: &str) -> Vec<String> {
        let who = user(name).0;
        let done = self.done.lock().unwrap();
        done.iter()
            .filter(|(u, _)| *u == who)
            .map(|(_, l)| l.clone())
            .collect()
    }

    async fn until_done(&self, count: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.done.lock().unwrap().len() < count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the workers carry the actions out");
    }
}

#[tokio::test]
async fn a_full_queue_refuses_with_a_reason_for_its_user_only_and_keeps_the_order() {
    let fake = Arc::new(Fake::default());
    let workers = Workers::new(fake.clone());
    // QUEUE actions of alice's wait (her worker has not even started).
    for i in 0..QUEUE {
        workers.queue(&user("alice"), line(i.to_string())).unwrap();
    }
    let refused = workers
        .queue(&user("alice"), line("one too many"))
        .expect_err("a full queue refuses");
    assert!(refused.to_string().contains("try again"), "{refused}");
    workers
        .queue(&user("bob"), line("hello"))
        .expect("bob's queue is his own");

    fake.gate.add_permits(QUEUE + 10);
    fake.until_done(QUEUE + 1).await;
    let expected: Vec<String> = (0..QUEUE).map(|i| i.to_string()).collect();
    assert_eq!(
        fake.lines_of("alice"),
        expected,
        "every action taken, in order"
    );
    assert_eq!(fake.lines_of("bob"), ["hello"]);
    // Room again: taken.
    workers.queue(&user("alice"), line("later")).unwrap();
    fake.until_done(QUEUE + 2).await;
    assert_eq!(
        fake.lines_of("alice").last().map(String::as_str),
        Some("later")
    );
}

#[tokio::test]
async fn idle_workers_end_and_the_next_action_starts_one() {
    let fake = Arc::new(Fake::default());
    fake.gate.add_permits(100);
    let workers = Workers::with_idle(fake.clone(), Duration::from_millis(50));
    workers.queue(&user("alice"), line("one")).unwrap();
    workers.queue(&user("bob"), line("one")).unwrap();
    fake.until_done(2).await;
    assert_eq!(workers.running(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(workers.running(), 0, "idle workers are reaped");

    workers.queue(&user("alice"), line("two")).unwrap();
    fake.until_done(3).await;
    assert_eq!(fake.lines_of("alice"), ["one", "two"]);
    assert_eq!(workers.running(), 1);
}

#[tokio::test]
async fn a_worker_that_ended_is_replaced() {
    let fake = Arc::new(Fake::default());
    fake.gate.add_permits(100);
    let workers = Workers::new(fake.clone());
    workers.queue(&user("alice"), line("stop")).unwrap();
    fake.until_done(1).await;
    // Its receiver goes with the task; the next action finds the queue closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    workers.queue(&user("alice"), line("after")).unwrap();
    fake.until_done(2).await;
    assert_eq!(fake.lines_of("alice"), ["stop", "after"]);
}
