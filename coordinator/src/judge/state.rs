use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use protocol::{FinalResult, Verdict};

use super::{
    Agent, Command, DEFAULT_MAX_ATTEMPTS, Effect, Lease, Member, NewSubmission, Rejected, Status, Submission, SubmissionId,
    TestRecord,
};

/// All submissions and agents. Ordered maps only, so every query and every iteration is
/// reproducible from the command sequence alone.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct JudgeState {
    next_id: SubmissionId,
    max_attempts: u32,
    /// Shared so that a snapshot's copy of the state (taken on the raft thread) costs a
    /// reference count per submission, not a deep copy; a change copies the one it changes.
    /// Archived inline, as a plain map of submissions: no sharing to track.
    #[rkyv(with = rkyv::with::MapKV<rkyv::with::Identity, rkyv::with::Unshare>)]
    submissions: BTreeMap<SubmissionId, Arc<Submission>>,
    /// Queued ids; ids grow with acceptance, so ascending order is FIFO, and a requeued
    /// submission goes back to its original place rather than the end.
    queue: BTreeSet<SubmissionId>,
    agents: BTreeMap<String, Agent>,
    /// Judge0 tokens of submissions made through that API.
    tokens: BTreeMap<String, SubmissionId>,
    /// See `Command::NameCluster`.
    cluster_id: Option<String>,
    /// See `Command::AddMember`.
    members: BTreeMap<u64, Member>,
}

impl Default for JudgeState {
    fn default() -> Self {
        JudgeState::new()
    }
}

impl JudgeState {
    pub fn new() -> JudgeState {
        JudgeState::with_max_attempts(DEFAULT_MAX_ATTEMPTS)
    }

    /// `max_attempts` is clamped to at least 1.
    pub fn with_max_attempts(max_attempts: u32) -> JudgeState {
        JudgeState {
            next_id: 1,
            max_attempts: max_attempts.max(1),
            submissions: BTreeMap::new(),
            queue: BTreeSet::new(),
            agents: BTreeMap::new(),
            tokens: BTreeMap::new(),
            cluster_id: None,
            members: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, command: Command) -> Result<Effect, Rejected> {
        match command {
            Command::Accept { submission, now_ms } => self.accept(submission, None, now_ms),
            Command::AcceptFunction { submission, function, now_ms } => self.accept(submission, Some(function), now_ms),
            Command::Assign { submission_id, agent_id, now_ms } => self.assign(submission_id, agent_id, now_ms),
            Command::TestDone { submission_id, agent_id, result } => {
                let sub = self.running_on(submission_id, &agent_id)?;
                if result.submission_id != submission_id {
                    return Err(Rejected::IdMismatch { expected: submission_id, got: result.submission_id });
                }
                if result.index as usize >= sub.test_count {
                    return Err(Rejected::TestOutOfRange { index: result.index, count: sub.test_count });
                }
                if sub.results.iter().any(|r| r.result.index == result.index) {
                    return Err(Rejected::DuplicateTest(result.index));
                }
                let sub = self.sub_mut(submission_id)?;
                sub.results.push(TestRecord::keep(result));
                Ok(Effect::TestRecorded)
            }
            Command::Complete { submission_id, agent_id, result, now_ms } => {
                self.complete(submission_id, agent_id, result, now_ms)
            }
            Command::Requeue { submission_id, agent_id, reason, now_ms } => {
                match &agent_id {
                    Some(agent) => {
                        self.running_on(submission_id, agent)?;
                    }
                    None => {
                        let sub = self.get(submission_id).ok_or(Rejected::UnknownSubmission(submission_id))?;
                        if sub.status != Status::Running {
                            return Err(Rejected::WrongStatus {
                                id: submission_id,
                                actual: sub.status,
                                expected: "running",
                            });
                        }
                    }
                }
                let (requeued, gave_up) = self.requeue_all([submission_id], &reason, now_ms);
                Ok(Effect::Requeued { requeued, gave_up })
            }
            Command::AgentUp { agent_id, languages, slots, now_ms } => {
                // A rejoining agent has a fresh connection: jobs on the old one are gone.
                Ok(self.agent_up(agent_id, languages, slots, &[], now_ms))
            }
            Command::AgentRejoin { agent_id, languages, slots, held, now_ms } => {
                Ok(self.agent_up(agent_id, languages, slots, &held, now_ms))
            }
            Command::AgentDown { agent_id, now_ms } => {
                let agent = self.agents.get(&agent_id).ok_or_else(|| Rejected::UnknownAgent(agent_id.clone()))?;
                let running: Vec<_> = agent.running.iter().copied().collect();
                let (requeued, gave_up) = self.requeue_all(running, &format!("agent {agent_id} went down"), now_ms);
                self.agents.remove(&agent_id);
                Ok(Effect::Requeued { requeued, gave_up })
            }
            Command::Rejudge { submission_id, rejudge, now_ms } => self.rejudge(submission_id, rejudge, now_ms),
            Command::NameCluster { cluster_id } => match &self.cluster_id {
                Some(named) => Err(Rejected::ClusterNamed(named.clone())),
                None => {
                    self.cluster_id = Some(cluster_id);
                    Ok(Effect::ClusterNamed)
                }
            },
            Command::AddMember { node_id, raft, api } => {
                self.members.insert(node_id, Member { raft, api });
                Ok(Effect::MemberAdded)
            }
            Command::AgentSlots { agent_id, free_slots } => {
                let agent = self.agents.get_mut(&agent_id).ok_or(Rejected::UnknownAgent(agent_id))?;
                agent.reported_free_slots = Some(free_slots);
                Ok(Effect::SlotsUpdated)
            }
            Command::AgentAlive { agent_id, now_ms } => {
                let agent = self.agents.get_mut(&agent_id).ok_or(Rejected::UnknownAgent(agent_id))?;
                agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
                Ok(Effect::AgentSeen)
            }
            Command::ExpireAgent { agent_id, silent_since_ms, now_ms } => {
                let agent = self.agents.get(&agent_id).ok_or_else(|| Rejected::UnknownAgent(agent_id.clone()))?;
                if agent.last_seen_ms > silent_since_ms {
                    return Err(Rejected::AgentNotSilent(agent_id));
                }
                let running: Vec<_> = agent.running.iter().copied().collect();
                let (requeued, gave_up) = self.requeue_all(running, &format!("lease of agent {agent_id} expired"), now_ms);
                self.agents.remove(&agent_id);
                Ok(Effect::Requeued { requeued, gave_up })
            }
        }
    }

    pub fn get(&self, id: SubmissionId) -> Option<&Submission> {
        self.submissions.get(&id).map(|s| &**s)
    }

    /// The submission a Judge0 token names.
    /// The cluster's name, once a `NameCluster` is applied.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// Addresses of the coordinators added at run time, by raft node id.
    pub fn members(&self) -> &BTreeMap<u64, Member> {
        &self.members
    }

    /// Every submission, by id.
    pub fn submissions(&self) -> impl Iterator<Item = &Submission> + '_ {
        self.submissions.values().map(|s| &**s)
    }

    pub fn by_token(&self, token: &str) -> Option<&Submission> {
        self.tokens.get(token).and_then(|id| self.get(*id))
    }

    /// Judge0 submissions, newest first: `per_page` of them after skipping `skip`, and
    /// how many there are in all.
    pub fn judge0_page(&self, skip: usize, per_page: usize) -> (Vec<&Submission>, usize) {
        let total = self.tokens.len();
        let page = self
            .submissions
            .values()
            .rev()
            .filter(|s| s.judge0.is_some())
            .skip(skip)
            .take(per_page)
            .map(|s| &**s)
            .collect();
        (page, total)
    }

    /// Queued submission ids, oldest first.
    pub fn queue(&self) -> impl Iterator<Item = SubmissionId> + '_ {
        self.queue.iter().copied()
    }

    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    pub fn running_len(&self) -> usize {
        self.agents.values().map(|a| a.running.len()).sum()
    }

    /// Agents not heard of after `silent_since_ms`, in id order.
    pub fn silent_agents(&self, silent_since_ms: u64) -> impl Iterator<Item = &Agent> + '_ {
        self.agents.values().filter(move |a| a.last_seen_ms <= silent_since_ms)
    }

    /// Registered agents in id order.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> + '_ {
        self.agents.values()
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }

    /// The oldest queued submission some agent can take now, and the agent: the one with
    /// the most free slots, ties going to the smallest id. A submission nobody can run
    /// does not block the ones behind it.
    pub fn next_assignment(&self) -> Option<(SubmissionId, String)> {
        self.next_assignment_among(|_| true)
    }

    /// `next_assignment` among the agents `eligible` accepts (a coordinator's own agents).
    pub fn next_assignment_among(&self, eligible: impl Fn(&str) -> bool) -> Option<(SubmissionId, String)> {
        if !self.agents.values().any(|a| a.free_slots() > 0 && eligible(&a.id)) {
            return None;
        }
        self.queue.iter().find_map(|&id| {
            let language = &self.submissions.get(&id)?.language;
            self.agents
                .values()
                .filter(|a| a.free_slots() > 0 && a.languages.contains(language) && eligible(&a.id))
                // max_by_key keeps the last maximum; reversing the ascending id order makes that the smallest id.
                .rev()
                .max_by_key(|a| a.free_slots())
                .map(|a| (id, a.id.clone()))
        })
    }

    fn accept(
        &mut self,
        new: NewSubmission,
        function: Option<protocol::FunctionSpec>,
        now_ms: u64,
    ) -> Result<Effect, Rejected> {
        if new.tests.is_empty() {
            return Err(Rejected::NoTests);
        }
        if let Some(meta) = &new.judge0
            && self.tokens.contains_key(&meta.token)
        {
            return Err(Rejected::DuplicateToken(meta.token.clone()));
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Some(meta) = &new.judge0 {
            self.tokens.insert(meta.token.clone(), id);
        }
        let test_count = new.tests.len();
        self.submissions.insert(
            id,
            Arc::new(Submission {
                id,
                language: new.language,
                source: new.source,
                tests: new.tests,
                test_count,
                limits: new.limits,
                options: new.options,
                judge0: new.judge0,
                problem: new.problem,
                function,
                status: Status::Queued,
                accepted_ms: now_ms,
                lease: None,
                attempts: 0,
                last_requeue_reason: None,
                results: Vec::new(),
                outcome: None,
                finished_ms: None,
                history: Vec::new(),
            }),
        );
        self.queue.insert(id);
        Ok(Effect::Accepted { id })
    }

    fn rejudge(&mut self, id: SubmissionId, rejudge: super::Rejudge, now_ms: u64) -> Result<Effect, Rejected> {
        let sub = self.get(id).ok_or(Rejected::UnknownSubmission(id))?;
        if sub.status != Status::Done {
            return Err(Rejected::WrongStatus { id, actual: sub.status, expected: "done" });
        }
        if sub.function.is_some() {
            return Err(Rejected::NotRejudgeable(id));
        }
        if rejudge.tests.is_empty() {
            return Err(Rejected::NoTests);
        }
        let sub = self.sub_mut(id)?;
        let outcome = sub.outcome.take().unwrap_or_else(|| FinalResult {
            submission_id: id,
            verdict: Verdict::IE,
            compile_output: String::new(),
            message: String::new(),
        });
        sub.history.push(super::PastJudging {
            outcome,
            results: std::mem::take(&mut sub.results),
            problem: sub.problem.take(),
            finished_ms: sub.finished_ms.take().unwrap_or(now_ms),
        });
        sub.test_count = rejudge.tests.len();
        sub.tests = rejudge.tests;
        sub.limits = rejudge.limits;
        sub.options = rejudge.options;
        sub.problem = rejudge.problem;
        sub.status = Status::Queued;
        sub.attempts = 0;
        sub.last_requeue_reason = Some("rejudge".into());
        self.queue.insert(id);
        Ok(Effect::Rejudged)
    }

    /// Finished submissions to the problem `slug`, in id order.
    pub fn done_for_problem(&self, slug: &str) -> Vec<SubmissionId> {
        self.submissions
            .values()
            .filter(|s| s.status == Status::Done && s.problem.as_ref().is_some_and(|p| p.slug == slug))
            .map(|s| s.id)
            .collect()
    }

    fn assign(&mut self, id: SubmissionId, agent_id: String, now_ms: u64) -> Result<Effect, Rejected> {
        let sub = self.get(id).ok_or(Rejected::UnknownSubmission(id))?;
        if sub.status != Status::Queued {
            return Err(Rejected::WrongStatus { id, actual: sub.status, expected: "queued" });
        }
        let agent = self.agents.get(&agent_id).ok_or_else(|| Rejected::UnknownAgent(agent_id.clone()))?;
        if !agent.languages.contains(&sub.language) {
            return Err(Rejected::LanguageUnsupported { agent: agent_id, language: sub.language.clone() });
        }
        if agent.free_slots() == 0 {
            return Err(Rejected::NoFreeSlot(agent_id));
        }
        // All checks are done: from here on nothing can fail, so no half-applied command.
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            agent.running.insert(id);
        }
        self.queue.remove(&id);
        let sub = self.sub_mut(id)?;
        sub.status = Status::Running;
        sub.attempts += 1;
        sub.lease = Some(Lease { agent_id, since_ms: now_ms });
        Ok(Effect::Assigned)
    }

    /// Registers an agent afresh; of its old leases only those of `held` stay.
    fn agent_up(&mut self, agent_id: String, languages: Vec<String>, slots: u32, held: &[SubmissionId], now_ms: u64) -> Effect {
        let old: Vec<SubmissionId> = self.agents.get(&agent_id).map(|a| a.running.iter().copied().collect()).unwrap_or_default();
        let (kept, stale): (Vec<SubmissionId>, Vec<SubmissionId>) = old.into_iter().partition(|id| held.contains(id));
        let (requeued, gave_up) = self.requeue_all(stale, "agent reconnected", now_ms);
        self.agents.insert(
            agent_id.clone(),
            Agent {
                id: agent_id,
                languages: languages.into_iter().collect(),
                slots,
                reported_free_slots: None,
                running: kept.into_iter().collect(),
                last_seen_ms: now_ms,
            },
        );
        Effect::AgentRegistered { requeued, gave_up }
    }

    fn complete(
        &mut self,
        id: SubmissionId,
        agent_id: Option<String>,
        result: FinalResult,
        now_ms: u64,
    ) -> Result<Effect, Rejected> {
        if result.submission_id != id {
            return Err(Rejected::IdMismatch { expected: id, got: result.submission_id });
        }
        match &agent_id {
            Some(agent) => {
                self.running_on(id, agent)?;
            }
            None => {
                let sub = self.get(id).ok_or(Rejected::UnknownSubmission(id))?;
                if sub.status == Status::Done {
                    return Err(Rejected::WrongStatus { id, actual: Status::Done, expected: "queued or running" });
                }
            }
        }
        let verdict = result.verdict;
        self.finish(id, result, now_ms);
        Ok(Effect::Completed { verdict })
    }

    /// Moves a queued or running submission to done. Callers have checked it exists.
    fn finish(&mut self, id: SubmissionId, result: FinalResult, now_ms: u64) {
        self.release(id);
        self.queue.remove(&id);
        if let Some(sub) = self.submissions.get_mut(&id).map(Arc::make_mut) {
            sub.status = Status::Done;
            sub.outcome = Some(result);
            sub.finished_ms = Some(now_ms);
            if sub.judge0.is_none() {
                sub.tests = Vec::new();
            }
        }
    }

    /// Ends the lease of a running submission, on both sides.
    fn release(&mut self, id: SubmissionId) {
        let Some(sub) = self.submissions.get_mut(&id).map(Arc::make_mut) else {
            return;
        };
        if let Some(lease) = sub.lease.take()
            && let Some(agent) = self.agents.get_mut(&lease.agent_id)
        {
            agent.running.remove(&id);
        }
    }

    /// Requeues running submissions, or completes them with `IE` once out of attempts.
    fn requeue_all(
        &mut self,
        ids: impl IntoIterator<Item = SubmissionId>,
        reason: &str,
        now_ms: u64,
    ) -> (Vec<SubmissionId>, Vec<SubmissionId>) {
        let (mut requeued, mut gave_up) = (Vec::new(), Vec::new());
        for id in ids {
            let Some(sub) = self.submissions.get(&id) else {
                continue;
            };
            if sub.attempts >= self.max_attempts {
                let message = format!("gave up after {} attempts; last failure: {reason}", sub.attempts);
                let result =
                    FinalResult { submission_id: id, verdict: Verdict::IE, compile_output: String::new(), message };
                self.finish(id, result, now_ms);
                gave_up.push(id);
                continue;
            }
            self.release(id);
            if let Some(sub) = self.submissions.get_mut(&id).map(Arc::make_mut) {
                sub.status = Status::Queued;
                sub.results.clear();
                sub.last_requeue_reason = Some(reason.to_owned());
            }
            self.queue.insert(id);
            requeued.push(id);
        }
        (requeued, gave_up)
    }

    fn running_on(&self, id: SubmissionId, agent_id: &str) -> Result<&Submission, Rejected> {
        let sub = self.get(id).ok_or(Rejected::UnknownSubmission(id))?;
        if sub.status != Status::Running {
            return Err(Rejected::WrongStatus { id, actual: sub.status, expected: "running" });
        }
        match &sub.lease {
            Some(lease) if lease.agent_id == agent_id => Ok(sub),
            _ => Err(Rejected::NotLeaseHolder { id, agent: agent_id.to_owned() }),
        }
    }

    fn sub_mut(&mut self, id: SubmissionId) -> Result<&mut Submission, Rejected> {
        self.submissions.get_mut(&id).map(Arc::make_mut).ok_or(Rejected::UnknownSubmission(id))
    }
}
