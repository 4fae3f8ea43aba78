//! Client ids that speak for the service in an app's IM clouds: LeanCloud's system client
//! (the sender of the mirror's system messages) and Tencent's App admin (the identity of
//! every REST call). Nobody logs in as them (the login signature and the UserSig refuse
//! them), and no group has them as members: as a member, a name the app's clients trust as
//! the service's own would sit among theirs, and the mirror would put it into the IM
//! cloud's conversation or group.
//!
//! `im-admin` keeps them per app beside the settings that name them (one transaction), in
//! an item the group functions may read (they cannot read app items, which hold the
//! master key).

use super::Invalid;

/// An app's reserved client ids (none for an app without IM cloud settings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReservedIds(Vec<String>);

impl ReservedIds {
    pub fn new(ids: impl IntoIterator<Item = String>) -> Self {
        let mut ids: Vec<String> = ids.into_iter().filter(|id| !id.is_empty()).collect();
        ids.sort();
        ids.dedup();
        Self(ids)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|r| r == id)
    }

    /// Refuses a change that would make a reserved id a member (or the owner) of a group.
    pub fn check_members<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<(), Invalid> {
        match ids.into_iter().find(|id| self.contains(id)) {
            None => Ok(()),
            Some(id) => Err(Invalid::new(format!(
                "client id {id} is reserved: it is the app's IM cloud system client (or App admin), which speaks for the service and cannot be a member of a group"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_id_is_refused_wherever_it_is_in_the_list() {
        let reserved = ReservedIds::new(["imsystem".into(), "administrator".into()]);
        assert_eq!(reserved.check_members(["alice", "bob"]), Ok(()));
        for list in [
            vec!["imsystem"],
            vec!["alice", "administrator"],
            vec!["alice", "bob", "imsystem"],
        ] {
            let e = reserved.check_members(list.clone()).unwrap_err();
            assert!(e.0.contains("is reserved"), "{list:?}: {e}");
        }
        // Exact ids only: no case folding, no prefix.
        assert_eq!(
            reserved.check_members(["IMSYSTEM", "imsystem2", "imsyste"]),
            Ok(())
        );
    }

    #[test]
    fn no_settings_reserve_nothing() {
        let none = ReservedIds::new([String::new()]);
        assert_eq!(none, ReservedIds::default());
        assert_eq!(none.check_members([""]), Ok(()));
        assert_eq!(none.check_members(["imsystem"]), Ok(()));
    }

    #[test]
    fn the_same_id_in_both_clouds_is_kept_once() {
        let both = ReservedIds::new(["admin".into(), "admin".into()]);
        assert_eq!(both, ReservedIds::new(["admin".into()]));
        assert!(both.contains("admin"));
    }
}
