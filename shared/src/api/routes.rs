//! The route list: the one place that says which Lambda functions exist (name, handler,
//! entry type), which paths each serves, which `events/` file exercises a route and what
//! it answers on success. `template.yaml`, the local server and the function crates are
//! all checked against this list by the e2e tests (`routes_agree`).

use axum::routing::{on, MethodFilter, MethodRouter};

use super::health::health;
use super::state::AppState;
use super::{group, signature, tencent_callback, usersig};

/// A function's entry point: what a function binary runs (`im_shared::lambda::run`).
/// One type per function, so that a binary names, and links, only its own handler.
pub trait Entry {
    const FUNCTION: Function;
    /// The function's handler, for the routes of [`Entry::FUNCTION`].
    fn handler(filter: MethodFilter) -> MethodRouter<AppState>;
}

/// Writes the function list once: the [`Function`] enum, its names (each function
/// crate's package and binary name), the handler of each (for the local server's
/// router, which serves them all) and one [`Entry`] type per function in [`entry`].
macro_rules! functions {
    ($($function:ident = $name:literal => $handler:path,)*) => {
        /// One Lambda function. The order of [`ROUTES`] is also the order the Lambda
        /// test replays `events/` in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Function {
            $($function,)*
        }

        impl Function {
            pub const ALL: &'static [Function] = &[$(Function::$function,)*];

            pub const fn name(self) -> &'static str {
                match self {
                    $(Function::$function => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|f| f.name() == name)
            }

            /// The function's handler (every one of them is linked into the caller).
            pub(crate) fn handler(self, filter: MethodFilter) -> MethodRouter<AppState> {
                match self {
                    $(Function::$function => on(filter, $handler),)*
                }
            }
        }

        /// The entry types, one per function, named as the [`Function`] variants.
        pub mod entry {
            use super::*;
            $(
                pub struct $function;
                impl Entry for $function {
                    const FUNCTION: Function = Function::$function;
                    fn handler(filter: MethodFilter) -> MethodRouter<AppState> {
                        on(filter, $handler)
                    }
                }
            )*
        }
    };
}

functions! {
    LoginSignature = "login-signature" => signature::login,
    ConversationSignature = "conversation-signature" => signature::conversation,
    InviteSignature = "invite-signature" => signature::invite,
    KickSignature = "kick-signature" => signature::kick,
    HistorySignature = "history-signature" => signature::history,
    BlockSignature = "block-signature" => signature::block,
    UnblockSignature = "unblock-signature" => signature::unblock,
    ConversationBlockSignature = "conversation-block-signature" => signature::conversation_block,
    ConversationUnblockSignature = "conversation-unblock-signature" => signature::conversation_unblock,
    UsersigSignature = "usersig-signature" => usersig::usersig,
    CreateGroup = "create-group" => group::create,
    UpdateGroup = "update-group" => group::update,
    GetGroup = "get-group" => group::get_group,
    ListMembers = "list-members" => group::list_members,
    ListUserGroups = "list-user-groups" => group::list_user_groups,
    DeleteGroup = "delete-group" => group::delete,
    AddMembers = "add-members" => group::add_members,
    RemoveMembers = "remove-members" => group::remove_members,
    GrantAdmins = "grant-admins" => group::grant_admins,
    RevokeAdmins = "revoke-admins" => group::revoke_admins,
    TransferOwner = "transfer-owner" => group::transfer_owner,
    TencentCallback = "tencent-callback" => tencent_callback::callback,
    Health = "health" => health,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// API Gateway route syntax, which axum 0.8 shares: `{name}` is one path segment.
    pub path: &'static str,
    pub function: Function,
    /// The `events/<event>.json` file that exercises this route.
    pub event: &'static str,
    /// The documented success status.
    pub status: u16,
}

macro_rules! route {
    ($method:literal $path:literal => $function:ident, $event:literal, $status:literal) => {
        Route {
            method: $method,
            path: $path,
            function: Function::$function,
            event: $event,
            status: $status,
        }
    };
}

pub const ROUTES: &[Route] = &[
    route!("GET" "/signature/login/{app_id}/{client_id}" => LoginSignature, "login-signature", 200),
    // The first version's spelling, and the correct one that some clients use
    // (docs/protocol.md).
    route!("GET" "/signature/conversion/{app_id}/{client_id}/{sorted_member_ids}" => ConversationSignature, "conversation-signature", 200),
    route!("GET" "/signature/conversation/{app_id}/{client_id}/{sorted_member_ids}" => ConversationSignature, "conversation-signature-alt-spelling", 200),
    // Without the member segment: a join, which signs an empty member list.
    route!("GET" "/signature/invite/{app_id}/{client_id}/{conversion_id}" => InviteSignature, "invite-signature-join", 200),
    route!("GET" "/signature/invite/{app_id}/{client_id}/{conversion_id}/{sorted_member_ids}" => InviteSignature, "invite-signature", 200),
    route!("GET" "/signature/kick/{app_id}/{client_id}/{conversion_id}" => KickSignature, "kick-signature-no-members", 200),
    route!("GET" "/signature/kick/{app_id}/{client_id}/{conversion_id}/{sorted_member_ids}" => KickSignature, "kick-signature", 200),
    route!("GET" "/signature/history/{app_id}/{client_id}/{conversation_id}" => HistorySignature, "history-signature", 200),
    route!("GET" "/signature/block/{app_id}/{client_id}/{conversation_id}" => BlockSignature, "block-signature", 200),
    route!("GET" "/signature/unblock/{app_id}/{client_id}/{conversation_id}" => UnblockSignature, "unblock-signature", 200),
    route!("GET" "/signature/conversation-block/{app_id}/{client_id}/{conversation_id}/{sorted_member_ids}" => ConversationBlockSignature, "conversation-block-signature", 200),
    route!("GET" "/signature/conversation-unblock/{app_id}/{client_id}/{conversation_id}/{sorted_member_ids}" => ConversationUnblockSignature, "conversation-unblock-signature", 200),
    // Tencent Cloud IM's login credential for the client.
    route!("GET" "/signature/usersig/{app_id}/{client_id}" => UsersigSignature, "usersig-signature", 200),
    route!("POST" "/im/group" => CreateGroup, "create-group", 201),
    route!("PUT" "/im/group/{group_id}" => UpdateGroup, "update-group", 200),
    route!("POST" "/im/group/{group_id}/member" => AddMembers, "add-members", 201),
    route!("GET" "/im/group/{group_id}" => GetGroup, "get-group", 200),
    route!("GET" "/im/group/{group_id}/member" => ListMembers, "list-members", 200),
    route!("GET" "/im/user/{client_id}/groups" => ListUserGroups, "list-user-groups", 200),
    route!("POST" "/im/group/{group_id}/admin" => GrantAdmins, "grant-admins", 201),
    route!("DELETE" "/im/group/{group_id}/admin" => RevokeAdmins, "revoke-admins", 204),
    route!("DELETE" "/im/group/{group_id}/member" => RemoveMembers, "remove-members", 204),
    // Hands group 1 to bob, who deletes it next (the order `events/` replay in).
    route!("POST" "/im/group/{group_id}/owner" => TransferOwner, "transfer-owner", 200),
    route!("DELETE" "/im/group/{group_id}" => DeleteGroup, "delete-group", 204),
    // Tencent Cloud IM's callbacks for one app: no bearer token (Tencent cannot send one);
    // its callback authentication instead. Always 200: the answer is in the body.
    route!("POST" "/im-cloud/tencent/callback/{app_id}" => TencentCallback, "tencent-callback", 200),
    // The one route without any authentication; it reveals nothing.
    route!("GET" "/health" => Health, "health", 200),
];

/// The functions that serve no route, by name (their crate, binary and `Binary` in
/// `template.yaml`): the IM cloud mirror, fed by the table's stream through an event
/// source mapping. [`Function::ALL`] names all the others.
pub const STREAM_FUNCTIONS: &[&str] = &["sync-conversations"];

/// Every function by name, as the scripts build and measure them: the route functions in
/// the order their first route has in [`ROUTES`] (the order `events/` replay in), then
/// [`STREAM_FUNCTIONS`].
pub fn function_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for route in ROUTES {
        let name = route.function.name();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.extend(STREAM_FUNCTIONS);
    names
}

/// The routes one function serves.
pub fn routes_of(function: Function) -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(move |r| r.function == function)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_scripts_function_list_names_every_function_once() {
        let names = function_names();
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), Function::ALL.len() + STREAM_FUNCTIONS.len());
        assert!(Function::ALL.iter().all(|f| unique.contains(f.name())));
        // Route order: the create comes before the routes that act on its group.
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(at("create-group") < at("add-members") && at("add-members") < at("delete-group"));
        assert_eq!(names.last(), Some(&"sync-conversations"));
    }

    #[test]
    fn every_function_has_a_route_and_names_round_trip() {
        for &f in Function::ALL {
            assert!(routes_of(f).next().is_some(), "{f:?} has no route");
            assert_eq!(Function::from_name(f.name()), Some(f));
        }
        assert_eq!(Function::from_name("nope"), None);
    }

    #[test]
    fn routes_and_events_are_unique() {
        let keys: HashSet<_> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
        assert_eq!(keys.len(), ROUTES.len());
        let events: HashSet<_> = ROUTES.iter().map(|r| r.event).collect();
        assert_eq!(events.len(), ROUTES.len());
    }
}
