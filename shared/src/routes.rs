//! The route list: the one place that says which paths exist, which Lambda function
//! serves each, which `events/` file exercises it and what it answers on success.
//! `template.yaml`, the local server and the function crates are all checked against
//! this list by the e2e tests (`e2e/tests/routes_agree.rs`).

/// One Lambda function; its name is the function crate's package (and binary) name.
/// The order of [`ROUTES`] is also the order the Lambda test replays `events/` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    LoginSignature,
    ConversationSignature,
    InviteSignature,
    KickSignature,
    HistorySignature,
    BlockSignature,
    UnblockSignature,
    ConversationBlockSignature,
    ConversationUnblockSignature,
    CreateGroup,
    UpdateGroup,
    GetGroup,
    ListMembers,
    ListUserGroups,
    DeleteGroup,
    AddMembers,
    RemoveMembers,
    GrantAdmins,
    RevokeAdmins,
    TransferOwner,
    Health,
}

impl Function {
    pub const ALL: [Function; 21] = [
        Function::LoginSignature,
        Function::ConversationSignature,
        Function::InviteSignature,
        Function::KickSignature,
        Function::HistorySignature,
        Function::BlockSignature,
        Function::UnblockSignature,
        Function::ConversationBlockSignature,
        Function::ConversationUnblockSignature,
        Function::CreateGroup,
        Function::UpdateGroup,
        Function::GetGroup,
        Function::ListMembers,
        Function::ListUserGroups,
        Function::DeleteGroup,
        Function::AddMembers,
        Function::RemoveMembers,
        Function::GrantAdmins,
        Function::RevokeAdmins,
        Function::TransferOwner,
        Function::Health,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Function::LoginSignature => "login-signature",
            Function::ConversationSignature => "conversation-signature",
            Function::InviteSignature => "invite-signature",
            Function::KickSignature => "kick-signature",
            Function::HistorySignature => "history-signature",
            Function::BlockSignature => "block-signature",
            Function::UnblockSignature => "unblock-signature",
            Function::ConversationBlockSignature => "conversation-block-signature",
            Function::ConversationUnblockSignature => "conversation-unblock-signature",
            Function::CreateGroup => "create-group",
            Function::UpdateGroup => "update-group",
            Function::GetGroup => "get-group",
            Function::ListMembers => "list-members",
            Function::ListUserGroups => "list-user-groups",
            Function::DeleteGroup => "delete-group",
            Function::AddMembers => "add-members",
            Function::RemoveMembers => "remove-members",
            Function::GrantAdmins => "grant-admins",
            Function::RevokeAdmins => "revoke-admins",
            Function::TransferOwner => "transfer-owner",
            Function::Health => "health",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
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
    // The one route without authentication; it reveals nothing.
    route!("GET" "/health" => Health, "health", 200),
];

/// The routes one function serves.
pub fn routes_of(function: Function) -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(move |r| r.function == function)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_function_has_a_route_and_names_round_trip() {
        for f in Function::ALL {
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
