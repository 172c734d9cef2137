curl https://observe.tansohq.com/api/plan \
-H "Authorization: Bearer obs_..."
