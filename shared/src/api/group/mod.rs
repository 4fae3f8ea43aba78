//! The group routes: authenticate, parse and validate here ([`input`]); who may do
//! what is enforced by the store as a condition of each write (`crate::store`). Every
//! change writes one audit line ([`audit`]), whatever its outcome.

mod audit;
mod handlers;
mod input;
mod paging;
mod precondition;
mod view;

pub use handlers::{
    add_members, create, delete, get_group, grant_admins, list_members, list_user_groups,
    remove_members, revoke_admins, transfer_owner, update,
};
