//! `[incident]`: who to call when something goes wrong. The contacts head the compliance
//! report's incident runbook, and its "Incident plan" item is done only when there are some.

use serde::{Deserialize, Serialize};

/// `[incident]`: the people an incident reaches first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// In the order to call them: `contacts = [{ name = "…", role = "…", reach = "…" }]`.
    pub contacts: Vec<Contact>,
}

/// One person (or rota) to call.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Who: a person or a rota (`Ana Lima`, `platform on-call`).
    pub name: String,
    /// What they decide or do in an incident (`incident lead`, `security`).
    pub role: String,
    /// How to reach them: a phone number, a pager, a channel, an address.
    pub reach: String,
}

impl IncidentConfig {
    /// The key that cannot be used and why, if one cannot.
    pub fn problem(&self) -> Option<(String, String)> {
        for (i, c) in self.contacts.iter().enumerate() {
            for (field, value) in [("name", &c.name), ("role", &c.role), ("reach", &c.reach)] {
                if value.trim().is_empty() {
                    return Some((
                        format!("incident.contacts[{i}].{field}"),
                        format!(
                            "is empty; every contact needs a name, a role and how to reach them{}",
                            if field == "reach" {
                                " (a phone number, pager, channel or address)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
            if let Some(j) = self.contacts[..i]
                .iter()
                .position(|o| o.name.trim() == c.name.trim())
            {
                return Some((
                    format!("incident.contacts[{i}].name"),
                    format!("'{}' is listed twice (also contacts[{j}])", c.name.trim()),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn contacts_need_a_name_a_role_and_a_way_to_reach_them() {
        let c = Config::parse(
            "[incident]\ncontacts = [\n  { name = \"Ana Lima\", role = \"incident lead\", reach = \"+44 20 7946 0000\" },\n  { name = \"platform on-call\", role = \"kill switch\", reach = \"#platform-oncall\" },\n]\n",
            "gw.toml",
        )
        .unwrap();
        assert_eq!(c.incident.contacts.len(), 2);
        assert_eq!(c.incident.contacts[1].reach, "#platform-oncall");
        assert!(Config::load(None).unwrap().incident.contacts.is_empty());
        for (bad, says) in [
            (
                "[incident]\ncontacts = [{ name = \"Ana\", role = \"lead\", reach = \" \" }]\n",
                "incident.contacts[0].reach: is empty",
            ),
            (
                "[incident]\ncontacts = [{ name = \"Ana\", role = \"lead\", reach = \"x\" }, { name = \"Ana\", role = \"b\", reach = \"y\" }]\n",
                "incident.contacts[1].name: 'Ana' is listed twice",
            ),
            (
                "[incident]\ncontacts = [{ name = \"Ana\", reach = \"x\" }]\n",
                "role",
            ),
            (
                "[incident]\ncontacts = [{ name = \"Ana\", role = \"lead\", reach = \"x\", phone = \"1\" }]\n",
                "phone",
            ),
        ] {
            let e = Config::parse(bad, "gw.toml").unwrap_err().to_string();
            assert!(
                e.starts_with("gw.toml: incident") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }
}
