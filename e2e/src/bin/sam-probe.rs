//! The probe of `make test`'s SAM suites (scripts/sam-local.sh): one login signature
//! through `sam local invoke`, with the suites' own SAM environment (`im_e2e::sam`),
//! against DynamoDB Local at `IM_TEST_SAM_HOST`:`IM_TEST_SAM_DDB_PORT` (table
//! `IM_TEST_SAM_PROBE_TABLE`, base image `IM_TEST_SAM_IMAGE`). Prints the answer's status:
//! 200 when a container can open a connection to DynamoDB Local on this machine, 503 when
//! it cannot. Any other failure panics with what SAM printed.

use im_e2e::repo::repo_root;
use im_e2e::sam::{invoke, Auth, Settings};
use im_e2e::stack::env;

fn main() {
    let settings = Settings {
        endpoint: format!(
            "http://{}:{}",
            env("IM_TEST_SAM_HOST"),
            env("IM_TEST_SAM_DDB_PORT")
        ),
        table: env("IM_TEST_SAM_PROBE_TABLE"),
        auth: Auth::Tokens,
    };
    let event = repo_root().join("events/login-signature.json");
    let invoked = invoke(&settings, "login-signature", &event);
    println!("{}", invoked.answer["statusCode"]);
}
