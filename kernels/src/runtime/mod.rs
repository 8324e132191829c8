//! What the kernels need from the machine around them: how work is cut into chunks
//! ([`partition`]), cache warming ([`prefetch`]), keeping the pool's workers awake between a
//! step's parallel loops ([`keep_awake`]), the FMA peak probe ([`peak`]), the phase profiler
//! ([`profile`]), the task log of parallel loops ([`task_log`]), per-worker scratch buffers
//! ([`scratch`]), the scaling model built on the task log ([`scaling`]), and the fixed reduction
//! shards of a training batch ([`shards`]).

pub mod keep_awake;
pub mod partition;
pub mod peak;
pub(crate) mod prefetch;
pub mod profile;
pub mod scaling;
pub mod scratch;
pub mod shards;
pub mod task_log;
