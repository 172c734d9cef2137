curl https://observe.tansohq.com/api/sdk-keys/me \
-H "Authorization: Bearer obs_..."
