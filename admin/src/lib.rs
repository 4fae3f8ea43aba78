//! Administration of the IM service's table: creating it from `template.yaml`, and
//! registering, rotating, listing and removing apps and their master keys; sending what
//! the IM cloud mirror gave up on back through it; bringing groups in (`import`) and
//! taking them out (`export`).

pub mod backfill;
pub mod export;
pub mod im_cloud;
pub mod import;
pub mod keyinput;
pub mod redrive;
pub mod table;
