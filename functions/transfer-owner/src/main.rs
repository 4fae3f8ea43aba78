//! Lambda entry point. The routes this binary serves are the ones the shared route list
//! assigns to this package's name; everything else lives in `im-shared`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    im_shared::lambda::run(env!("CARGO_PKG_NAME")).await
}
