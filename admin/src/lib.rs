//! Administration of the IM service's table: creating it from `template.yaml`, and
//! registering, rotating, listing and removing apps and their master keys.

pub mod keyinput;
pub mod table;
