//! Lambda entry point: this function's routes and handler are the ones the shared route
//! list names `TencentCallback`; everything else lives in `im-shared`.

fn main() -> Result<(), lambda_http::Error> {
    im_shared::lambda::run(im_shared::functions::TencentCallback)
}
